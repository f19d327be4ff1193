"""A tiny, randomly initialised CLIP text model saved to a directory: a real `clip:<dir>` text
back-end that needs no download."""
from __future__ import annotations

import torch


def save_tiny_clip(path) -> None:
    """A randomly initialised CLIP text model plus a BPE tokenizer from a hand-made vocab."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": len(letters) + i for i, c in enumerate(letters)})
    merges = [("s", "m"), ("i", "l"), ("l", "e</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(path)
    cfg = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(0)
    CLIPTextModel(cfg).save_pretrained(path)
