"""Training under torchrun: 2 processes (gloo on CPU) make the same steps as 1 process at the same global batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from distill_tools import train
from distill_tools.recipe import LossSection, TrainSection

LENGTHS = [4, 2, 7, 3, 5, 1, 6, 2, 3, 8]
# 10 examples in micro-batches of 3: each epoch ends with a micro-batch of one, which leaves rank 1 idle
SETTINGS = {"max_steps": 6, "batch_size": 3, "grad_accum": 2, "warmup_steps": 1, "lr": 3e-3, "checkpoint_every": 2}
WORKER = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train import make_examples, small_model
from distill_tools import distributed, train
from distill_tools.recipe import LossSection, TrainSection

place = distributed.start()
model = small_model()
settings = json.loads(sys.argv[2])
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0  # seconds per step, for the Ctrl-C test to land in
ran = []  # the steps this run made (a resumed run makes only the rest)
state = train.train(model, make_examples({lengths!r}), TrainSection(**settings), LossSection(alpha=0.3), pad_id=0,
                    seed=1, folder=Path(sys.argv[1]), on_step=lambda state: ran.append(time.sleep(pause)),
                    say=lambda line: print(line, file=sys.stderr))
if place.main:
    print(json.dumps({{"world": place.size, "loss": [h["loss"] for h in state.history],
                      "tokens": [h["tokens"] for h in state.history], "ran": len(ran)}}))
distributed.stop()
"""


def one_process(folder: Path, settings: dict = SETTINGS) -> tuple[torch.nn.Module, train.TrainState]:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_train import make_examples, small_model

    model = small_model()
    state = train.train(
        model, make_examples(LENGTHS), TrainSection(**settings), LossSection(alpha=0.3), pad_id=0, seed=1, folder=folder
    )
    return model, state


@pytest.mark.parametrize("fsdp", [False, True], ids=["replicated", "fsdp"])
@pytest.mark.timeout(240)
def test_two_processes_make_the_same_steps_as_one(tmp_path: Path, fsdp: bool) -> None:
    """Ctrl-C stops both ranks at one step with a checkpoint; resumed, 2 processes give the curve of 1 and the same
    weights. Replicated: each rank holds the whole student and the gradients are all-reduced. FSDP: each rank
    holds half of every parameter, gradient and optimizer moment; rank 0's plain model gets the trained weights."""
    settings = {**SETTINGS, "fsdp": fsdp}
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), lengths=LENGTHS))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(tmp_path / "two"),
        json.dumps(settings),
    ]
    # Ctrl-C as a terminal sends it: to torchrun and its workers (one process group), once training has begun
    first = subprocess.Popen(
        [*command, "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "two" / "latest").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the first checkpoint (step 2) is the sign that training runs
    os.killpg(first.pid, signal.SIGINT)
    _, err = first.communicate(timeout=90)
    assert first.returncode != 0 and "interrupted at step" in err, err[-2000:]
    stopped = json.loads(next((tmp_path / "two").glob("ckpt-*/state.json")).read_text())["step"]
    assert 2 <= stopped < SETTINGS["max_steps"]
    assert ("fsdp: each of 2 ranks holds 50% of the parameters" in err) == fsdp, err[-2000:]

    done = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env)  # resumes
    assert done.returncode == 0, done.stderr[-2000:]
    two = json.loads(done.stdout.strip().splitlines()[-1])
    assert two["world"] == 2 and two["ran"] == SETTINGS["max_steps"] - stopped

    model, one = one_process(tmp_path / "one", settings)
    assert [h["tokens"] for h in one.history] == two["tokens"]  # the same global batches
    assert two["loss"] == pytest.approx([h["loss"] for h in one.history], rel=1e-5)

    # rank 0 alone wrote the checkpoints, in full; they hold the weights one process trains
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["ckpt-000006", "latest", "settings.json"]
    from test_train import small_model

    trained = small_model()
    assert train.load_checkpoint(tmp_path / "two", trained, None).step == 6
    for a, b in zip(model.parameters(), trained.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    if not fsdp:  # one process resumes a replicated run's checkpoint (nothing left to train)
        resumed, state = one_process(tmp_path / "two")
        assert state.step == 6 and [h["loss"] for h in state.history] == two["loss"]


@pytest.mark.timeout(600)
def test_tiny_recipe_under_torchrun_matches_one_process(assistant_home: Path, tmp_path: Path) -> None:
    """`assistant distill run --nproc 2` (torchrun, gloo), replicated and sharded (--fsdp): the loss curve of one
    process, a registered student that passes verification. The first run starts with no converted teacher: rank 0
    converts the GGUF, the other rank reads its copy (transformers writes weights from rank 0 only: both converting
    left a folder without weights)."""
    from test_pipeline import tiny_recipe

    path = tiny_recipe(tmp_path, **{'name = "smollm2-tiny-student"': 'name = "ddp-student"\noutput_dir = "work"'})
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")])),
        "ASSISTANT_DISTILL_CACHE": str(tmp_path / "hf-cache"),  # the ranks' first run converts the GGUF
    }

    def run(*flags: str) -> tuple[dict, list[float]]:
        done = subprocess.run(
            [sys.executable, "-m", "assistant", "distill", "run", str(path), "--json", *flags],
            capture_output=True,
            text=True,
            timeout=280,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        state = json.loads(next((tmp_path / "work" / "checkpoints").glob("ckpt-*/state.json")).read_text())
        return json.loads(done.stdout), [h["loss"] for h in state["history"]]

    two, two_curve = run("--nproc", "2")
    sharded, sharded_curve = run("--nproc", "2", "--fsdp", "--fresh")
    one, one_curve = run("--fresh")  # the teacher cache is reused, training starts over in one process
    assert len(two_curve) == 2 and two_curve == pytest.approx(one_curve, rel=1e-4)
    assert sharded_curve == pytest.approx(one_curve, rel=1e-4)
    for summary in (two, sharded, one):
        assert summary["verification"]["passed"] and Path(summary["gguf"]).exists()
