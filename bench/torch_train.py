"""The same post-training step in PyTorch: p2law's built-in Llama-style decoder (RMSNorm,
rotary embeddings in the rotate_half layout, SwiGLU, grouped-query attention, tied embeddings),
AdamW, the same batch and sequence length, byte windows of the same corpus. Prints one JSON line.

python bench/torch_train.py HIDDEN INTER LAYERS HEADS KV HEAD_DIM BATCH SEQ STEPS CORPUS_DIR
"""
import json, math, os, sys, time, glob
import torch
import torch.nn.functional as F

hidden, inter, layers, heads, kv, hd, batch, seq, steps = map(int, sys.argv[1:10])
corpus_dir = sys.argv[10]
torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)

files = sorted(glob.glob(os.path.join(corpus_dir, "*.txt")))
data = torch.tensor(list(b"".join(open(f, "rb").read() for f in files)), dtype=torch.long)


class Rope(torch.nn.Module):
    def __init__(self):
        super().__init__()
        inv = 10000.0 ** (-torch.arange(0, hd, 2).float() / hd)
        ang = torch.outer(torch.arange(seq + 1).float(), inv)
        ang = torch.cat([ang, ang], dim=-1)
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())

    def forward(self, x):
        t = x.shape[2]
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * self.cos[:t] + rot * self.sin[:t]


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n1 = torch.nn.RMSNorm(hidden, eps=1e-5)
        self.q = torch.nn.Linear(hidden, heads * hd, bias=False)
        self.k = torch.nn.Linear(hidden, kv * hd, bias=False)
        self.v = torch.nn.Linear(hidden, kv * hd, bias=False)
        self.o = torch.nn.Linear(heads * hd, hidden, bias=False)
        self.n2 = torch.nn.RMSNorm(hidden, eps=1e-5)
        self.gate = torch.nn.Linear(hidden, inter, bias=False)
        self.up = torch.nn.Linear(hidden, inter, bias=False)
        self.down = torch.nn.Linear(inter, hidden, bias=False)

    def forward(self, x, rope):
        b, t, _ = x.shape
        h = self.n1(x)
        q = rope(self.q(h).view(b, t, heads, hd).transpose(1, 2))
        k = rope(self.k(h).view(b, t, kv, hd).transpose(1, 2))
        v = self.v(h).view(b, t, kv, hd).transpose(1, 2)
        k = k.repeat_interleave(heads // kv, dim=1)
        v = v.repeat_interleave(heads // kv, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, heads * hd))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(256, hidden)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(layers))
        self.norm = torch.nn.RMSNorm(hidden, eps=1e-5)
        self.rope = Rope()

    def forward(self, ids):
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, self.rope)
        return self.norm(x) @ self.embed.weight.T


model = Model()
params = sum(p.numel() for p in model.parameters())
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
gen = torch.Generator().manual_seed(0)


def step():
    starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
    ids = torch.stack([data[s : s + seq + 1] for s in starts])
    logits = model(ids[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, 256), ids[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


for _ in range(3):
    step()
t0 = time.perf_counter()
for _ in range(steps):
    step()
secs = time.perf_counter() - t0
tokens = steps * batch * seq
attn = 12.0 * layers * heads * hd * seq
print(json.dumps({"impl": "pytorch " + torch.__version__, "params": params, "batch": batch, "seq_len": seq, "steps": steps,
                  "threads": torch.get_num_threads(), "seconds": round(secs, 3), "tokens_per_s": round(tokens / secs, 1),
                  "gflops": round((6.0 * params + attn) * tokens / secs / 1e9, 2)}))
