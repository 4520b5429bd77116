"""``mcp-router asyncapi``: the AsyncAPI document written to a file or to stdout.

The document itself is ``router.tools.asyncapi.asyncapi_document`` (pure);
this module only chooses YAML or JSON and writes it.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from router.broker.amqp import redact
from router.core.counts import plural
from router.tools.asyncapi import asyncapi_document
from router.tools.terminal import fail, load_or_fail

__all__ = ["run_asyncapi"]


def run_asyncapi(args: argparse.Namespace) -> int:
    """Write the document to ``--output`` (or stdout); 1 when it cannot be made or written."""
    config = load_or_fail(args.config)
    if isinstance(config, int):
        return config
    try:
        document = asyncapi_document(config, amqp_url=args.amqp_url, title=args.title,
                                     version=args.api_version)
    except ValueError as exc:  # e.g. a port that is not a number in --amqp-url
        return fail(f"cannot describe the broker URL {redact(args.amqp_url)}: {exc}")
    text = (json.dumps(document, indent=2, ensure_ascii=False) + "\n" if args.format == "json"
            else yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        return fail(f"cannot write {args.output}: {exc.strerror or exc}")
    print(f"wrote {args.output}: {plural(len(document['channels']), 'channel')}, "
          f"{plural(len(document['operations']), 'operation')}, "
          f"{plural(len(document['components']['messages']), 'message')}", file=sys.stderr)
    return 0
