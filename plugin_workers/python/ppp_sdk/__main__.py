"""``python -m ppp_sdk MODULE:ATTRIBUTE (--unix PATH | --listen HOST:PORT)``: run a plugin worker.

``python -m ppp_sdk --stem CONTROL --unix PATH``: a stem cell, which serves PPP at once with no
plugin and loads the one the supervisor names on the control socket CONTROL."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ppp_sdk.plugin import Plugin
from ppp_sdk.server import serve


def load_plugin(spec: str) -> Plugin:
    """Import ``package.module:attribute`` (attribute defaults to ``plugin``)."""
    module_name, _, attribute = spec.partition(":")
    plugin = getattr(importlib.import_module(module_name), attribute or "plugin", None)
    if not isinstance(plugin, Plugin):
        raise SystemExit(f"{spec}: not a ppp_sdk.Plugin")
    return plugin


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ppp_sdk", description=__doc__)
    parser.add_argument(
        "plugin", nargs="?", help="module:attribute of the Plugin, e.g. plugins.subtract_numbers:plugin"
    )
    parser.add_argument("--stem", metavar="CONTROL", help="start as a stem cell bound later through this socket")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", help="Unix socket path to listen on")
    where.add_argument("--listen", help="host:port to listen on (TCP)")
    parser.add_argument("--max-concurrency", type=int, default=4)
    options = parser.parse_args(argv)
    if bool(options.plugin) == bool(options.stem):
        parser.error("give a plugin, or --stem CONTROL (with --unix) for a stem cell")
    if options.stem and not options.unix:
        parser.error("--stem needs --unix")
    logging.basicConfig(level=os.environ.get("PPP_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    # A private socket: only our own uid (and root) may connect; the directory guards it too.
    os.umask(0o077)
    if options.stem:
        serve(None, unix=options.unix, stem=options.stem, load=load_plugin)
        return
    serve(load_plugin(options.plugin), unix=options.unix, listen=options.listen, max_workers=options.max_concurrency)


if __name__ == "__main__":
    main()
