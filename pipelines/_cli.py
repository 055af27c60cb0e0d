"""Shared argument parsing for the pipeline scripts: `--config NAME|PATH` and `--set section.key=value`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from emotion_core.config import ExperimentConfig, load_config


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", default="default", help="experiments/<name>.yaml or a path (default: default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    return p


def config_from(args: argparse.Namespace) -> ExperimentConfig:
    return load_config(args.config, args.overrides)


def show(result: dict[str, Any]) -> None:
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2, default=str))
