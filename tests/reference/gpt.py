"""GPT-2 in PyTorch, written from the paper/Hugging Face layout: learned positions,
pre-LN blocks, fused QKV (Conv1D weights stored [in, out]), GELU tanh approximation,
causal softmax, final LayerNorm, head tied to the token embedding. Parameter names are
the Hugging Face checkpoint keys, which examples/gpt2.tfx reproduces. Built from
PyTorch's own modules where they exist (nn.LayerNorm, nn.functional.gelu)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Conv1D(nn.Module):
    """y = x W + b with W stored [in, out] (Hugging Face's GPT-2 layout)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = Conv1D(d, 3 * d)
        self.c_proj = Conv1D(d, d)

    def forward(self, x):                       # x: [B, T, D]
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=-1)
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-2, -1) / math.sqrt(D // self.heads)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        s = s.masked_fill(~mask, float("-inf"))
        y = F.softmax(s, dim=-1) @ v             # [B, H, T, Dh]
        return self.c_proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = Conv1D(d, 4 * d)
        self.c_proj = Conv1D(4 * d, d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, heads)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = MLP(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, vocab, ctx, d, heads, layers):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)


class GPT(nn.Module):
    def __init__(self, vocab=50257, ctx=1024, d=768, heads=12, layers=12):
        super().__init__()
        self.ctx = ctx
        self.transformer = Transformer(vocab, ctx, d, heads, layers)

    def forward(self, tokens):                  # tokens: [B, T] int64
        t = self.transformer
        T = tokens.shape[1]
        x = t.wte(tokens) + t.wpe(torch.arange(T, device=tokens.device))
        for block in t.h:
            x = block(x)
        return t.ln_f(x) @ t.wte.weight.T        # [B, T, vocab]

    def weights(self):
        """The state dict as numpy f32 arrays under Hugging Face names."""
        return {k: v.detach().cpu().float().numpy() for k, v in self.state_dict().items()}
