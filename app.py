"""Derain images in the browser: a local web page around the network, giving the pixels test.py writes.

python app.py [--weights FILE|NAME ...] [--host 127.0.0.1] [--port 7860] [--device auto|cpu|cuda] [--max_pixels N]

Open http://127.0.0.1:7860 (the --host and --port), upload a rainy photo, press Derain. The page offers
each --weights file, the demo model once `bash demo.sh` has trained it, and the authors' released
weights by name (downloaded on first use: models/pretrained.py). Needs gradio
(pip install -r requirements-app.txt). The work is in webapp/ (jobs.py: no gradio; page.py: the page).
Exit codes: 0 stopped with Ctrl-C or SIGTERM, 2 bad arguments or gradio missing.
"""
import argparse
import errno
import signal
import socket
import sys
import tempfile
from pathlib import Path

import torch

from inference.network import deraining_device
from utils.cli import port, positive_int
from webapp.jobs import MAX_PIXELS, Deraining, weight_choices

INSTALL = "pip install -r requirements-app.txt"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", action="append",
                        help="a checkpoint (.pth) or released name to offer first; repeat for more (the demo model, "
                             "if trained, and the released names are always offered)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port, default=7860, help="port to serve on, 1 to 65535 (default 7860)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max_pixels", type=positive_int, default=MAX_PIXELS,
                        help=f"largest image taken, in pixels (default {MAX_PIXELS:,}: 4096x4096)")
    return parser.parse_args(argv)


def setup(args: argparse.Namespace) -> tuple[dict[str, str], torch.device]:
    """The weights on offer and the device, as test.py sets it up (inference.network), once --host and
    --port can be served on; ValueError if bad."""
    check_address(args.host, args.port)
    return weight_choices(args.weights), deraining_device(args.device)


def check_address(host: str, port: int) -> None:
    """ValueError naming --host or --port when nothing can listen there. gradio tries the same, but any
    failure becomes its "Cannot find empty port", with a fix (its environment variable) this app does not use."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise ValueError(f"--host {host}: not an address of this machine ({err.strerror})") from None
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"--port {port}: the port is in use on {host} (another server?); choose another "
                             "with --port N") from None
        raise ValueError(f"cannot serve on {host}:{port} (--host, --port): {err.strerror}") from None


def stop(signum: int, frame: object) -> None:
    """SIGTERM (a test's or a scheduler's stop) ends the server as Ctrl-C does, so the temp folder goes too."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one (e.g. to the process group) would
    raise KeyboardInterrupt                        # interrupt gradio's own shutdown


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; serves until stopped and returns the exit code."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return int(exit_.code or 0)
    try:
        from webapp.page import build_page, serve
    except ModuleNotFoundError as err:
        if err.name != "gradio":
            raise
        print(f"app.py: error: the web app needs gradio, which is not installed: {INSTALL}", file=sys.stderr)
        return 2
    try:
        choices, device = setup(args)
    except ValueError as err:
        print(f"app.py: error: {err}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, stop)
    with tempfile.TemporaryDirectory(prefix="nerd-rain-app-") as out_dir:
        page = build_page(Deraining(choices, device, Path(out_dir), args.max_pixels))
        print(f"weights: {', '.join(choices)}; device: {device}; images up to {args.max_pixels:,} pixels",
              flush=True)
        try:
            serve(page, args.host, args.port)
        except OSError:  # taken since check_address (gradio's message would name its environment variable)
            print(f"app.py: error: cannot serve on {args.host}:{args.port}: the port was taken since start-up; "
                  "choose another with --port N", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
