"""Models for the worker's tests and benchmark, and the Python side of the benchmark.

    python ciro_models.py make OUT_DIR [--size test|bench]
        Writes TorchScript models (mlp.pt, encoder.pt), a sample input for each
        (<name>.x.f32, little-endian float32) and Python's output for it (<name>.y.f32), and
        prints a JSON description (per-row input shape, output shape, files).

    python ciro_models.py inputs MODEL.pt OUT_DIR --row-shape 8,32 [--count N] [--rows R]
        Writes N job inputs (job<i>.x.safetensors, R random rows each, seeded by i) and the
        model's output for each as Python torch computes it (job<i>.y.safetensors, tensor
        "output", as the worker writes it): what a submitter checks a worker's output against.

    python ciro_models.py spin OUT.pt
        Writes a hostile TorchScript model whose forward pass never ends (an interpreted loop
        of additions that stops after 2**62 steps): the worker's time limit test.

    python ciro_models.py bench MODEL.pt --row-shape 512 [--iters N] [--warmup N]
        Times batch-1 inference in Python TorchScript, one call after another, and prints
        JSON: throughput (rows/s), p50 and p99 latency (microseconds), device.
"""

import argparse
import json
import struct
import time
from typing import List

import torch


class Encoder(torch.nn.Module):
    """A small transformer encoder: [batch, seq, d_model] -> mean over seq -> [batch, d_out]."""

    def __init__(self, d_model: int, heads: int, layers: int, d_out: int):
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True
        )
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = torch.nn.Linear(d_model, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


class Spin(torch.nn.Module):
    """Returns its input after 2**62 interpreted additions of zero: in practice, never."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        i = 0
        while i < 4611686018427387904:
            y = y + 0.0
            i += 1
        return y


class Stalling(torch.nn.Module):
    """Returns its input at once when its sum is not positive; else after 2**62 interpreted
    additions of zero (in practice, never): a model whose input decides whether it loops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        i = 0
        while bool(x.sum() > 0) and i < 4611686018427387904:
            y = y + 0.0
            i += 1
        return y


class Centered(torch.nn.Module):
    """Each row less the mean of the rows in its forward pass: its output depends on the rows
    beside it (what a model whose author wants shared passes to give wrong answers does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=0, keepdim=True)


class Noisy(torch.nn.Module):
    """Its input plus uniform noise: a model that draws random numbers, whose output a re-run
    reproduces only from the same generator state."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand_like(x)


class Sparse(torch.nn.Module):
    """A sparse tensor of its input's shape (all zeros, no indices: the conversions and
    constructors that set indices are refused by the engine's screen): an output no
    safetensors file holds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape, layout=torch.sparse_coo)


class Huge(torch.nn.Module):
    """A view of its first column expanded to 2**40 columns per row: a few bytes that stand
    for terabytes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].expand(x.shape[0], 1099511627776)


class Hungry(torch.nn.Module):
    """Takes 1 GiB of memory per input row (a tensor of ones it sums): what a pass's memory
    limit must refuse where the machine would give it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones([x.shape[0], 268435456])
        return x + big.sum()


class Reader(torch.nn.Module):
    """Its input plus the first 4 bytes of the file at `path`: a model that reads the worker's
    files (its key, other jobs' outputs) into the output its submitter downloads."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stolen = torch.from_file(self.path, False, 4, dtype=torch.uint8)
        return x + stolen.to(torch.float32)


class Writer(torch.nn.Module):
    """Its input, after writing it to the file at `path`: a model that writes the worker's
    files."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.path)
        return x


class Named(torch.nn.Module):
    """An ordinary model whose own names are also names a model may not reach: a layer list
    `save` (as YOLOv5 keeps the outputs it reuses), a `ModuleList` named `ops` and a list of
    `classes`; its output is its input through a linear layer and a ReLU, times the number of
    classes when layer 1 is in `save`."""

    def __init__(self):
        super().__init__()
        self.save: List[int] = [0, 1]
        self.ops = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.ReLU()])
        self.classes: List[str] = ["cat", "dog"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        if 1 in self.save:
            x = x * float(len(self.classes))
        return x


class Remembering(torch.nn.Module):
    """Its input plus the sum of the previous job's input, kept in an attribute: a model that
    carries one job's data into the next (another submitter's output, and a result no re-run
    reproduces)."""

    def __init__(self):
        super().__init__()
        self.last = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.last
        self.last = x.sum().reshape(1)
        return out


SIZES = {
    # Small enough for tests to build and run in milliseconds.
    "test": {"mlp": (16, 64, 4), "encoder": dict(seq=8, d_model=32, heads=4, layers=2, d_out=4)},
    # The benchmark's: big enough that a forward pass is real work, small enough for a CPU.
    "bench": {"mlp": (512, 2048, 512), "encoder": dict(seq=32, d_model=256, heads=8, layers=2, d_out=16)},
}


def build(size):
    d_in, hidden, d_out = SIZES[size]["mlp"]
    mlp = torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden), torch.nn.GELU(),
        torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
        torch.nn.Linear(hidden, d_out),
    ).eval()
    e = SIZES[size]["encoder"]
    encoder = Encoder(e["d_model"], e["heads"], e["layers"], e["d_out"]).eval()
    return {"mlp": (mlp, [d_in]), "encoder": (encoder, [e["seq"], e["d_model"]])}


def write_safetensors(path, name, array):
    """One float32 tensor as a safetensors file (8-byte header length, JSON header, data)."""
    data = array.astype("<f4").tobytes()
    header = json.dumps(
        {name: {"dtype": "F32", "shape": list(array.shape), "data_offsets": [0, len(data)]}},
        separators=(",", ":"),
    ).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + data)


def make(out, size):
    torch.manual_seed(7)
    described = {}
    for name, (model, row_shape) in build(size).items():
        scripted = torch.jit.script(model)
        path = f"{out}/{name}.pt"
        scripted.save(path)
        x = torch.randn(8, *row_shape)
        with torch.no_grad():
            y = torch.jit.load(path).eval()(x)
        x.numpy().astype("<f4").tofile(f"{out}/{name}.x.f32")
        write_safetensors(f"{out}/{name}.x.safetensors", "input", x.numpy())
        y.numpy().astype("<f4").tofile(f"{out}/{name}.y.f32")
        described[name] = {
            "file": path,
            "row_shape": row_shape,
            "x_shape": list(x.shape),
            "y_shape": list(y.shape),
        }
    described["torch"] = torch.__version__
    print(json.dumps(described))


def inputs(path, out, row_shape, count, rows):
    model = torch.jit.load(path).eval()
    for i in range(1, count + 1):
        torch.manual_seed(1000 + i)
        x = torch.randn(rows, *row_shape)
        with torch.no_grad():
            y = model(x)
        write_safetensors(f"{out}/job{i}.x.safetensors", "input", x.numpy())
        write_safetensors(f"{out}/job{i}.y.safetensors", "output", y.numpy().astype("<f4"))


def bench(path, row_shape, iters, warmup):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch.jit.load(path, map_location=device).eval()
    x = torch.randn(1, *row_shape)
    latencies = []
    with torch.no_grad():
        for i in range(warmup + iters):
            started = time.perf_counter_ns()
            y = model(x.to(device)).cpu()
            elapsed = time.perf_counter_ns() - started
            if i >= warmup:
                latencies.append(elapsed)
    assert y.shape[0] == 1
    latencies.sort()
    total_s = sum(latencies) / 1e9
    print(json.dumps({
        "throughput": iters / total_s,
        "p50_us": latencies[len(latencies) // 2] / 1e3,
        "p99_us": latencies[min(len(latencies) - 1, (len(latencies) * 99) // 100)] / 1e3,
        "device": device,
        "threads": torch.get_num_threads(),
    }))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make")
    p.add_argument("out")
    p.add_argument("--size", choices=sorted(SIZES), default="test")
    p = sub.add_parser("inputs")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--row-shape", required=True, type=lambda s: [int(d) for d in s.split(",")])
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--rows", type=int, default=4)
    p = sub.add_parser("spin")
    p.add_argument("out")
    p = sub.add_parser("centered")
    p.add_argument("out")
    for name in ("noisy", "sparse", "huge", "hungry", "remembering", "stalling", "named"):
        p = sub.add_parser(name)
        p.add_argument("out")
    for name in ("reader", "writer"):
        p = sub.add_parser(name)
        p.add_argument("out")
        p.add_argument("--path", required=True)
    p = sub.add_parser("bench")
    p.add_argument("model")
    p.add_argument("--row-shape", required=True, type=lambda s: [int(d) for d in s.split(",")])
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    if args.command == "make":
        make(args.out, args.size)
    elif args.command == "inputs":
        inputs(args.model, args.out, args.row_shape, args.count, args.rows)
    elif args.command == "spin":
        torch.jit.script(Spin()).save(args.out)
    elif args.command == "centered":
        torch.jit.script(Centered()).save(args.out)
    elif args.command in ("reader", "writer"):
        model = {"reader": Reader, "writer": Writer}[args.command](args.path)
        torch.jit.script(model).save(args.out)
    elif args.command in ("noisy", "sparse", "huge", "hungry", "remembering", "stalling", "named"):
        model = {
            "noisy": Noisy,
            "sparse": Sparse,
            "huge": Huge,
            "hungry": Hungry,
            "remembering": Remembering,
            "stalling": Stalling,
            "named": Named,
        }[args.command]()
        torch.jit.script(model).save(args.out)
    else:
        bench(args.model, args.row_shape, args.iters, args.warmup)


if __name__ == "__main__":
    main()
