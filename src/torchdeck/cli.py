"""``torchdeck`` on the command line: ``train`` a spec headless, ``check`` one, ``export`` its model to
ONNX, or open the ``studio``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main"]


def _nproc(value: str) -> int:
    """argparse type of ``--nproc``: its error names the option (argparse adds ``argument --nproc:``)."""
    from torchdeck.distributed import check_nproc
    try:
        return check_nproc(value, where="--nproc")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--nproc: ")) from None


def _setup(ref: str | None):
    if ref is None:
        return None
    from torchdeck.distributed import load_setup
    return load_setup(ref)


def _final_line(rows: list[dict], seconds: float) -> str:
    final = rows[-1] if rows else {}
    values = "  ".join(f"{k} {v:.4f}" for k, v in final.items() if isinstance(v, float) and k != "epoch_seconds")
    return f"torchdeck: done in {seconds:.1f} s; final {values}"


def _train_distributed(args: argparse.Namespace, spec) -> int:
    """``--nproc N``: torchrun runs the spec on N processes; rank 0's relayed events drive the
    progress bar here; the exit status is torchrun's."""
    from torchdeck.distributed import launch
    from torchdeck.train import ProgressBar

    print(f"torchdeck: training {spec.name!r} on {args.nproc} processes (torchrun): {spec.task.name} on "
          f"{spec.data.name}, {spec.model.backbone}, {spec.train.epochs} epochs, global batch "
          f"{spec.train.batch_size}", flush=True)
    t0 = time.perf_counter()
    run = launch(spec, args.nproc, callbacks=[] if args.quiet else [ProgressBar()], threads=args.threads,
                 save=args.save, setup=args.setup)
    try:
        code = run.wait()
    except KeyboardInterrupt:
        run.stop()
        raise
    if code != 0:
        # Reports arrive in the order the ranks failed: the first is the cause, the others
        # (a peer's "connection closed") its consequences.
        for i, err in enumerate(run.errors):
            what = "failed" if i == 0 else "stopped after that"
            print(f"torchdeck: error: rank {err['rank']} {what}: {err['type']}: {err['message']}",
                  file=sys.stderr, flush=True)
        if not run.errors:
            print(f"torchdeck: error: the distributed run failed (torchrun exit status {code}); "
                  "see the ranks' output above", file=sys.stderr, flush=True)
        return code
    rows = run.history.epochs
    print(_final_line(rows, time.perf_counter() - t0), flush=True)
    if args.metrics_out:
        Path(args.metrics_out).write_text(json.dumps(rows, indent=1))
    if args.save:
        print(f"torchdeck: weights saved to {args.save}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import torch

    from torchdeck.spec import Experiment
    from torchdeck.train import ProgressBar

    spec = Experiment.from_yaml(args.spec)
    if args.epochs is not None:
        spec = spec.with_changes(**{"train.epochs": args.epochs})
    # Refused here, before a model is built or processes start, when it names nothing callable.
    setup = _setup(args.setup)
    if args.nproc is not None:
        return _train_distributed(args, spec)
    if args.threads:
        torch.set_num_threads(args.threads)
    learner = spec.build()
    if learner.weights_report is not None:
        print(f"torchdeck: weights {learner.weights_report}", flush=True)
    if setup is not None:
        setup(learner)
    # A spec that lists its own progress_bar keeps that one (its options), not a second bar.
    if not args.quiet and not any(isinstance(cb, ProgressBar) for cb in learner.callbacks):
        learner.add_callback(ProgressBar())
    print(f"torchdeck: training {spec.name!r}: {spec.task.name} on {spec.data.name}, "
          f"{spec.model.backbone}, {learner.optimizer.rule}, {spec.train.epochs} epochs", flush=True)
    t0 = time.perf_counter()
    learner.fit()
    print(_final_line(learner.history.epochs, time.perf_counter() - t0), flush=True)
    if args.metrics_out:
        Path(args.metrics_out).write_text(json.dumps(learner.history.epochs, indent=1))
    if args.save:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in learner.model.state_dict().items()}, args.save)
        print(f"torchdeck: weights saved to {args.save}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from torchdeck.spec import Experiment

    spec = Experiment.from_yaml(args.spec)
    print(spec.to_python() if args.python else spec.to_yaml(), end="")
    return 0


def _export(args: argparse.Namespace) -> int:
    from torchdeck.models import export_onnx
    from torchdeck.spec import Experiment

    spec = Experiment.from_yaml(args.spec)
    if args.weights:
        spec = spec.with_changes(**{"model.weights": args.weights})
    learner = spec.build()
    if learner.weights_report is not None:
        print(f"torchdeck: weights {learner.weights_report}", flush=True)
    report = export_onnx(learner, args.out, dynamic_batch=not args.fixed_batch, opset=args.opset,
                         check=not args.no_check, atol=args.atol, exporter=args.exporter)
    print(f"torchdeck: exported {spec.model.backbone} to {report}", flush=True)
    return 0


def _studio(args: argparse.Namespace) -> int:
    notebook = Path(__file__).resolve().parents[2] / "app" / "studio.ipynb"
    if not notebook.is_file():
        raise FileNotFoundError(f"the Studio notebook is not at {notebook}; run `make studio` from a clone of the repository")
    print(f"torchdeck Studio: http://127.0.0.1:{args.port}/", flush=True)
    cmd = [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={args.port}", "--Voila.ip=127.0.0.1"]
    return subprocess.call(cmd, env=os.environ.copy())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchdeck", description="Train PyTorch models from a spec, headless or in the Studio.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the run a spec describes and print progress and final metrics")
    t.add_argument("spec", help="a YAML spec, e.g. examples/digits.yaml")
    t.add_argument("--epochs", type=int, help="override train.epochs")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--quiet", action="store_true", help="no progress bar; only the first and last lines")
    t.add_argument("--metrics-out", help="write the per-epoch metrics as JSON here")
    t.add_argument("--save", help="save the trained weights here (.safetensors)")
    t.add_argument("--nproc", type=_nproc, help="train data-parallel on N processes of this machine (torchrun, "
                                               "DDP; gloo on CPU, NCCL on GPUs); train.batch_size is the global batch")
    t.add_argument("--setup", help="'module:function' called with the learner before training (on every rank)")
    t.set_defaults(fn=_train)
    c = sub.add_parser("check", help="validate a spec and print it in canonical form")
    c.add_argument("spec")
    c.add_argument("--python", action="store_true", help="print a Python script that runs it instead")
    c.set_defaults(fn=_check)
    e = sub.add_parser("export", help="export the spec's model to ONNX and check it with onnxruntime")
    e.add_argument("spec", help="a YAML spec; its model (and data, for an example batch) is built")
    e.add_argument("--weights", help="weights to load first (.safetensors or a torch state dict); "
                                     "overrides model.weights")
    e.add_argument("--out", required=True, help="the .onnx file to write")
    e.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                   help="torch's exporter (default: dynamo; torchscript is faster but deprecated by torch)")
    e.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    e.add_argument("--fixed-batch", action="store_true", help="fix the batch size to the example's")
    e.add_argument("--atol", type=float, help="largest accepted |onnxruntime - torch| (default 1e-4 for float32)")
    e.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    e.set_defaults(fn=_export)
    s = sub.add_parser("studio", help="serve the Studio with Voila on 127.0.0.1")
    s.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8866)))
    s.set_defaults(fn=_studio)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("torchdeck: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:
        # Spec and input errors: one line, no traceback. Anything else is a bug and keeps its traceback.
        print(f"torchdeck: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
