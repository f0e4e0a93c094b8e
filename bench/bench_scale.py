"""Distillation past one process: training throughput under torchrun, replicated and sharded.

The same student, cached teacher outputs, global batch and steps, run by ``torchrun --nproc_per_node 1``
(one process with a thread per core, and with one thread) and ``--nproc_per_node 2`` (gloo, one thread
each), the latter twice: replicated (gradients all-reduced) and sharded (``[train] fsdp``: weights,
gradients and AdamW state split over the ranks, layers gathered as they run). On a 2-core CPU the
processes share the same cores, so the ratios measure the data-parallel and sharding overheads, not a
speed-up; on N GPUs each process has a device of its own. What more training tokens buy is bench_curve.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, bench_home, cli, ratio, row

BENCH = "scale"
TWO_VS_ONE = "training throughput, 2 processes vs 1 (torchrun)"
SHARDED_VS_REPLICATED = "training throughput, 2 sharded processes (FSDP) vs 2 replicated"
WORKER = """
import json, sys
from pathlib import Path
from distill_tools import batches, distributed, student, teacher_cache, torch_model, train
from distill_tools.recipe import LossSection, TrainSection, choose_layers

place = distributed.start()
cache, teacher_path, layers, width, steps, out, fsdp = sys.argv[1:8]
teacher = torch_model.load(teacher_path)
outputs = [o for p in sorted(Path(cache).glob("shard-*.safetensors")) for o in teacher_cache.read_shard(p)]
model = student.prune(teacher.model, choose_layers(layers, teacher.model.config.num_hidden_layers))
student.narrow_mlp_shape(model, int(width))
cfg = TrainSection(max_steps=int(steps), batch_size=8, warmup_steps=1, checkpoint_every=10_000, fsdp=fsdp == "fsdp")
said = []
state = train.train(model, batches.examples(outputs, 128), cfg, LossSection(), pad_id=teacher.tokenizer.pad_token_id,
                    seed=0, folder=Path(out), say=said.append)
timed = state.history[1:]  # the first step warms up
if place.main:
    print(json.dumps({"tok_s": sum(h["tokens"] for h in timed) / sum(h["seconds"] for h in timed),
                      "loss": [h["loss"] for h in state.history], "said": said}))
distributed.stop()
"""


def _teacher_cache(folder: Path, prompts: int, max_new: int) -> Path:
    from assistant.models.registry import embedded_model_path
    from distill_tools import prompts as prompt_files
    from distill_tools import teacher_cache, torch_model, torch_teacher

    teacher = torch_model.load(str(embedded_model_path()))
    tok = teacher.tokenizer
    runner = torch_teacher.TorchTeacher(teacher.model, tok.eos_token_id, tok.pad_token_id)
    records = prompt_files.load_records(["bundled:prompts"], limit=prompts)
    teacher_cache.teacher_pass(
        records,
        runner,
        tok,
        folder,
        template="{prompt}",
        max_new_tokens=max_new,
        top_k=32,
        key="bench",
        batch_size=prompts,
    )
    return folder


def _run(
    nproc: int, threads: int, cache: Path, shape: tuple[str, int], steps: int, out: Path, fsdp: bool = False
) -> dict[str, Any]:
    from assistant.models.registry import embedded_model_path

    script = out.parent / "worker.py"
    script.write_text(WORKER)
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        PYTHON,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        str(script),
        str(cache),
        str(embedded_model_path()),
        shape[0],
        str(shape[1]),
        str(steps),
        str(out),
        "fsdp" if fsdp else "replicated",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun --nproc_per_node {nproc} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput_rows(quick: bool) -> list[dict[str, Any]]:
    from assistant.models.engine import physical_cores

    shape, prompts, max_new, steps = (("0,10,20,29", 256), 8, 16, 4) if quick else (("all", 480), 32, 48, 8)
    cores, half = physical_cores(), max(1, physical_cores() // 2)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        cache = _teacher_cache(Path(tmp) / "cache", prompts, max_new)
        one = _run(1, cores, cache, shape, steps, Path(tmp) / "one")
        two = _run(2, half, cache, shape, steps, Path(tmp) / "two")
        sharded = _run(2, half, cache, shape, steps, Path(tmp) / "sharded", fsdp=True)
        single = _run(1, 1, cache, shape, steps, Path(tmp) / "single")
    same = lambda run: all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(one["loss"], run["loss"]))  # noqa: E731
    student = "tiny recipe's student (4 layers, 256-channel MLPs)" if quick else "default recipe's student"
    setup = f"{student}, global batch 8, {steps} steps (the first not timed), {prompts} teacher-answered prompts"
    notes = (
        f"{setup}, {cores} physical cores: 1 process × {cores} threads {one['tok_s']:.0f} tok/s, 2 gloo processes "
        f"× {half} thread(s) {two['tok_s']:.0f} tok/s, 1 process × 1 thread {single['tok_s']:.0f} "
        "tok/s. The processes share the same cores, so this is no speed-up from more hardware: it shows the "
        "data-parallel overhead (gradient all-reduce, a model copy per process) against torch's own threading "
        f"of small matrices; on N GPUs each process has a device of its own. Same loss curve: "
        f"{'yes' if same(two) else 'NO'}"
    )
    share = next((line.split("holds ")[1].split(" of")[0] for line in sharded["said"] if "holds" in line), "?")
    sharded_notes = (
        f"{setup}; 2 gloo processes × {half} thread(s): replicated {two['tok_s']:.0f} tok/s, sharded "
        f"{sharded['tok_s']:.0f} tok/s, each rank holding {share} of the parameters (and of their gradients and "
        "AdamW moments). The cost of sharding: every layer's weights are all-gathered before its forward and "
        "again before its backward, and its gradients reduce-scattered, against one all-reduce per step. "
        f"Same loss curve as 1 process: {'yes' if same(sharded) else 'NO'}"
    )
    best = max(one["tok_s"], single["tok_s"])  # the baseline: one process at its best thread count here
    return [
        row(
            BENCH,
            TWO_VS_ONE,
            two["tok_s"],
            "tok/s",
            baseline=best,
            ratio=ratio(two["tok_s"], best),
            notes=notes + "; baseline: the faster 1-process figure",
        ),
        row(
            BENCH,
            SHARDED_VS_REPLICATED,
            sharded["tok_s"],
            "tok/s",
            baseline=two["tok_s"],
            ratio=ratio(sharded["tok_s"], two["tok_s"]),
            notes=sharded_notes,
        ),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    if quick:  # four torchrun launches and a teacher pass: minutes, not a quick run
        return [
            row(BENCH, name, None, "tok/s", notes="full mode only (four torchrun launches of the default student)")
            for name in (TWO_VS_ONE, SHARDED_VS_REPLICATED)
        ]
    with bench_home():
        return throughput_rows(quick)


if __name__ == "__main__":
    sys.exit(cli(run, "bench_scale"))
