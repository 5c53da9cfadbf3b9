"""Launch a spec's run on ``nproc`` processes with torchrun and watch it from this process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from typing import Any, Sequence

from torchdeck.distributed._control import CONTROL_ENV, STOP_REASON, read_ack, write_control
from torchdeck.distributed._relay import RelayServer, Replay
from torchdeck.train import Callback, MetricStream
from torchdeck.train._state import History

__all__ = ["launch", "DistributedRun", "check_nproc", "torchrun_command"]


def check_nproc(nproc: Any, where: str = "nproc") -> int:
    """``nproc`` as a positive int, or a ValueError naming ``where``."""
    if isinstance(nproc, str):
        try:
            nproc = int(nproc.strip())
        except ValueError:
            raise ValueError(f"{where}: must be a positive integer (processes to start), got {nproc!r}") from None
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"{where}: must be a positive integer (processes to start), got {nproc!r}")
    return nproc


def torchrun_command(nproc: int, module: str, args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m module args...``
    (torchrun itself, run by this interpreter: the same environment, whatever is on PATH)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *args]


class DistributedRun:
    """A torchrun run in progress: ``wait()`` for its exit status; meanwhile ``stream`` (a
    :class:`~torchdeck.train.MetricStream`) and ``history`` fill from rank 0's relay.

    ``errors``: the error reports of the ranks that failed (``rank``, ``type``, ``message``,
    ``traceback``); ``output``: the processes' stdout and stderr when launched with ``capture=True``.

    ``pause()`` / ``resume()`` / ``stop()`` write the run's control file (see
    :mod:`torchdeck.distributed._control`): every rank pauses or stops at the same step.
    ``paused``: rank 0 has acknowledged the pause. ``outcome``: running, finished, stopped or failed.
    """

    def __init__(self, process: subprocess.Popen, server: RelayServer, replay: Replay, stream: MetricStream,
                 workdir: tempfile.TemporaryDirectory, control: str | None = None) -> None:
        self.process = process
        self.control = control  # the control file's path (None: launched without one)
        self._terminated = False
        self.stream = stream
        self._server, self._replay, self._workdir = server, replay, workdir
        self._output: list[str] = []
        self._pump: threading.Thread | None = None
        if process.stdout is not None:
            self._pump = threading.Thread(target=self._read_output, daemon=True)
            self._pump.start()
        self.returncode: int | None = None

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._output.append(line)

    @property
    def history(self) -> History:
        return self._replay.history

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self._replay.errors)

    @property
    def output(self) -> str:
        return "".join(self._output)

    @property
    def done(self) -> bool:
        return self.returncode is not None or self.process.poll() is not None

    def wait(self, timeout: float | None = None) -> int:
        """The exit status (torchrun's: 0 when every rank succeeded); raises
        ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        code = self.process.wait(timeout)
        if self.returncode is None:
            if self._pump is not None:
                self._pump.join(10)
            self._server.close()  # the relay's last lines were sent before the processes exited
            self._workdir.cleanup()
            self.returncode = code
        return code

    def _command(self, command: str) -> None:
        if self.control is None:
            raise RuntimeError("this run was launched without a control file: it cannot be paused or stopped "
                               "gracefully")
        try:
            write_control(self.control, command)
        except OSError:
            if not self.done:
                raise  # else the run ended meanwhile and its folder is gone: nothing to control

    def pause(self) -> None:
        """Pause every rank at its next step boundary (the same step on all); ``paused`` turns
        True once they have."""
        self._command("pause")

    def resume(self) -> None:
        """Let paused ranks go on (at once: they look every 50 ms)."""
        self._command("run")

    @property
    def paused(self) -> bool:
        """Whether the ranks have reported pausing (and not resumed since)."""
        if self.control is None or self.done:
            return False
        ack = read_ack(self.control)
        return ack is not None and ack[0] == "paused"

    @property
    def stopped(self) -> bool:
        """Whether the run ended because it was stopped (gracefully, or by SIGTERM as a fallback)."""
        return self._terminated or (self.done and self.stop_reason == STOP_REASON)

    @property
    def stop_reason(self) -> str:
        """The fit's stop reason as rank 0 relayed it at fit_end ("" before, or when none)."""
        return self._replay.state.stop_reason

    @property
    def outcome(self) -> str:
        """``running``, then ``finished``, ``stopped`` (by :meth:`stop`) or ``failed``."""
        if not self.done:
            return "running"
        if self.stopped:
            return "stopped"
        code = self.process.poll() if self.returncode is None else self.returncode
        return "finished" if code == 0 and not self.errors else "failed"

    def stop(self, timeout: float = 30.0) -> int:
        """End the run: the ranks stop together at their next step boundary (``fit_end`` runs,
        loggers and checkpoints close, exit status 0); if they have not ended within
        ``timeout`` seconds (or the run has no control file), SIGTERM to torchrun, which
        passes it to the ranks, and a kill 10 s later. Returns the exit status."""
        if self.control is not None and self.process.poll() is None:
            self._command("stop")
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.process.poll() is None:
            self._terminated = True
            self.process.terminate()
        try:
            return self.wait(timeout if self.control is None else 10.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.wait()


def launch(spec: Any, nproc: int, *, callbacks: Sequence[Callback] = (), stream: MetricStream | None = None,
           threads: int = 0, save: str | os.PathLike | None = None, setup: str | None = None,
           capture: bool = False, env: dict[str, str] | None = None) -> DistributedRun:
    """Start ``spec`` (an :class:`~torchdeck.spec.Experiment`, or a YAML file) on ``nproc``
    processes of this machine with torchrun; returns at once.

    Rank 0 relays its events here: they feed ``stream`` (a new MetricStream by default) and
    ``callbacks`` (e.g. a ProgressBar) on a background thread. The run can be paused, resumed
    and stopped gracefully (``run.pause()``, ...) through a control file in its temporary folder.

    Args:
        threads: torch CPU threads per process (0: torchrun's default of 1).
        save: rank 0 saves the trained weights here (.safetensors).
        setup: ``"module:function"`` called with each rank's learner before it trains.
        capture: collect the processes' stdout and stderr in ``run.output`` instead of
            letting them through to this process's.
        env: extra environment variables for the processes.
    """
    from torchdeck.spec import Experiment

    nproc = check_nproc(nproc)
    if not isinstance(spec, Experiment):
        spec = Experiment.from_yaml(spec)
    stream = MetricStream() if stream is None else stream
    replay = Replay([stream, *callbacks])
    workdir = tempfile.TemporaryDirectory(prefix="torchdeck-run-")
    spec_file = os.path.join(workdir.name, "spec.yaml")
    spec.to_yaml(spec_file)
    args = [spec_file]
    if threads:
        args += ["--threads", str(int(threads))]
    if save:
        args += ["--save", os.path.abspath(os.fspath(save))]
    if setup:
        args += ["--setup", setup]
    control = os.path.join(workdir.name, "control")
    write_control(control, "run")
    server = RelayServer(replay)
    child_env = {**os.environ, **(env or {}), **server.env(), CONTROL_ENV: control}
    try:
        process = subprocess.Popen(torchrun_command(nproc, "torchdeck.distributed.worker", args), env=child_env,
                                   stdout=subprocess.PIPE if capture else None,
                                   stderr=subprocess.STDOUT if capture else None, text=True)
    except BaseException:
        server.close(0)
        workdir.cleanup()
        raise
    return DistributedRun(process, server, replay, stream, workdir, control)
