"""`tickerflow promote`, `tickerflow rollback`, `tickerflow models`: the champion alias, moved by hand and read back."""

from __future__ import annotations

import argparse
import json

DEFAULT_MODEL = "tickerflow-gru"
SHOWN_METRICS = ("test_rmse", "test_pinball", "test_coverage_80", "test_coverage_90", "skill_vs_naive")


def _client():
    from tickerflow.tasks.tracking import use_tracking

    return use_tracking()


def format_event(event: dict) -> str:
    previous = f" (was v{event['previous']})" if event.get("previous") else ""
    return f"{event['at']}  {event['action']:<8} v{event['version']}{previous}  by {event['by']}: {event['why']}"


def models_listing(client, name: str) -> dict:
    """Versions (newest first) with aliases, test metrics and the gate's verdict, plus the champion history."""
    from tickerflow.tasks.register import champion_history

    # search_model_versions leaves aliases empty; the registered model maps alias -> version
    aliases = client.get_registered_model(name).aliases
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda mv: int(mv.version), reverse=True)
    rows = [
        {
            "version": str(mv.version),
            "aliases": sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
            "created": mv.creation_timestamp,
            "run_id": mv.run_id,
            # `gru` or a distribution baseline; versions from before the tag existed are GRUs
            "forecaster": mv.tags.get("forecaster", "gru"),
            **{k: mv.tags.get(k) for k in SHOWN_METRICS},
            # set by a training run that could not load or score this version as champion
            "scoring_error": mv.tags.get("champion_scoring_error"),
            "gate": mv.tags.get("promotion"),
            "gate_reason": mv.tags.get("promotion_reason"),
        }
        for mv in versions
    ]
    return {"model": name, "versions": rows, "champion_history": champion_history(client, name)}


def _num(value: str | None, spec: str) -> str:
    """A tag's number formatted with `spec` (e.g. "+8.4f"), or a right-aligned dash when there is none."""
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()))
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return f"{'-':>{width}}"


def format_listing(listing: dict) -> str:
    lines = [
        f"model {listing['model']}",
        f"{'version':>7}  {'forecaster':<16} {'aliases':<20} {'test rmse':>10} {'pinball':>8} {'cov80':>6} {'cov90':>6} "
        f"{'skill':>8}  gate",
    ]
    for r in listing["versions"]:
        broken = f"  NOT SCORABLE: {r['scoring_error']}" if r.get("scoring_error") else ""
        lines.append(
            f"{r['version']:>7}  {r['forecaster']:<16} {','.join(r['aliases']) or '-':<20} {_num(r['test_rmse'], '10.4f')} "
            f"{_num(r['test_pinball'], '8.4f')} {_num(r['test_coverage_80'], '6.3f')} {_num(r['test_coverage_90'], '6.3f')} "
            f"{_num(r['skill_vs_naive'], '+8.4f')}  {r['gate'] or '-'}: {r['gate_reason'] or ''}{broken}"
        )
    lines.append("\nchampion history (oldest first):")
    lines += [f"  {format_event(e)}" for e in listing["champion_history"]] or ["  (none)"]
    return "\n".join(lines)


def cmd_promote(args: argparse.Namespace) -> int:
    from tickerflow.tasks.register import promote_version

    event = promote_version(_client(), args.model, str(args.version), args.reason, args.by)
    print(f"{args.model}: {format_event(event)}")
    if args.json:
        print(json.dumps(event))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from tickerflow.tasks.register import rollback_champion

    event = rollback_champion(_client(), args.model, args.reason, args.by)
    print(f"{args.model}: {format_event(event)}")
    if args.json:
        print(json.dumps(event))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    listing = models_listing(_client(), args.model)
    print(json.dumps(listing, default=str) if args.json else format_listing(listing))
    return 0


def add_parsers(subparsers) -> None:
    """Add `promote`, `rollback` and `models` to the `tickerflow` command."""
    promote = subparsers.add_parser("promote", help="make a registered version the champion")
    promote.add_argument("--version", required=True, type=int, help="model version to promote")
    promote.add_argument("--reason", default="promoted by hand", help="why (recorded in the registry)")
    rollback = subparsers.add_parser("rollback", help="make the previous champion the champion again")
    rollback.add_argument("--reason", default="rolled back by hand", help="why (recorded in the registry)")
    models = subparsers.add_parser("models", help="list versions, aliases, metrics and the champion history")
    for p, func in ((promote, cmd_promote), (rollback, cmd_rollback), (models, cmd_models)):
        p.add_argument("--model", default=DEFAULT_MODEL, help=f"registered model name (default {DEFAULT_MODEL})")
        p.add_argument("--json", action="store_true", help="print JSON as the last line of stdout")
        if p is not models:
            p.add_argument("--by", help="who (default: $TICKERFLOW_USER or the login name)")
        p.set_defaults(func=func)
