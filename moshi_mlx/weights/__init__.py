"""Checkpoint files to our parameter names: which layout a file holds (formats.py, from its header), one
mapping per layout (lm_torch.py, lm_mlx.py, mimi_torch.py), the quantization a file or config records
(quant.py, quant_config.py), safetensors reading and atomic writes (safetensors_io.py), strict loading
(strict.py) and a typed tree_flatten (tree.py). Nothing here downloads (loading/hub.py does) or builds a
model."""
