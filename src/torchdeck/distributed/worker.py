"""One rank of ``torchdeck train --nproc N`` (run by torchrun: ``python -m torchdeck.distributed.worker``).

Every rank builds the spec's learner (the same seed gives the same model and data order),
splits its loaders and wraps its model (:func:`prepare`), and trains; rank 0 also relays
its events to the launcher and saves the weights. When the launcher set a control file
(``TORCHDECK_CONTROL``), every rank runs a :class:`ProcessControl`: the launcher's pause,
resume and graceful stop, taken by all ranks at the same step. A rank that fails reports its error to
the launcher and exits non-zero; torchrun then ends the other ranks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable, Sequence

from torch.distributed.elastic.multiprocessing.errors import record

__all__ = ["main", "load_setup"]


def load_setup(ref: str) -> Callable[[Any], Any]:
    """``"package.module:function"`` -> the function."""
    module, sep, name = ref.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"--setup: expected 'module:function', got {ref!r}")
    try:
        imported = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"--setup: cannot import {module!r}: {e}") from None
    fn = getattr(imported, name, None)
    if not callable(fn):
        raise ValueError(f"--setup: {module!r} has no function {name!r}")
    return fn


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m torchdeck.distributed.worker")
    p.add_argument("spec")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--save")
    p.add_argument("--setup")
    return p


def _train(args: argparse.Namespace) -> None:
    import torch

    from torchdeck.distributed._control import CONTROL_ENV, ProcessControl
    from torchdeck.distributed._ddp import prepare
    from torchdeck.distributed._env import init
    from torchdeck.distributed._relay import RELAY_ENV, RelaySender
    from torchdeck.spec import Experiment

    spec = Experiment.from_yaml(args.spec)
    dist_info = init(spec.train.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    learner = spec.build()
    prepare(learner)
    if args.setup:
        load_setup(args.setup)(learner)
    if os.environ.get(CONTROL_ENV):
        learner.add_callback(ProcessControl())
    if dist_info.rank == 0 and os.environ.get(RELAY_ENV):
        learner.add_callback(RelaySender())
    learner.fit()
    if dist_info.rank == 0 and args.save:
        from safetensors.torch import save_file
        save_file({k: v.detach().cpu().contiguous() for k, v in learner.model.state_dict().items()}, args.save)


@record
def main(argv: Sequence[str] | None = None) -> int:
    from torchdeck.distributed._env import rank, shutdown
    from torchdeck.distributed._relay import report_error

    args = _parser().parse_args(argv)
    try:
        _train(args)
    except BaseException as e:
        r = rank()
        report_error(e, r)
        print(f"torchdeck: error on rank {r}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        shutdown(wait=False)
        raise
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
