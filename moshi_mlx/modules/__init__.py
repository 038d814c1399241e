"""The device-agnostic blocks the models are built from: streaming convolutions (conv.py), SEANet
(seanet.py), the transformer (transformer.py) and its ring KV cache (kv_cache.py), Mimi's quantizer
(quantizer.py), the LM's embeddings (embedding.py). Every streaming block has init_state() and step().
No CPU special cases here: faster CPU variants live in moshi_mlx/cpu/ and are swapped in at load time."""
