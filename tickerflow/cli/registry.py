"""`tickerflow promote`, `tickerflow rollback`, `tickerflow models`: the champion alias, moved by hand and read
back through the champion protocol of `tickerflow.tracking.registry`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tickerflow_model.names import MODEL_NAME


def format_event(event: dict) -> str:
    """One decision of the history: what moved (or stayed), by whom, why."""
    version, previous = event["version"], event.get("previous")
    if event["action"] not in ("keep", "refused"):
        what = f"v{version}" + (f" (was v{previous})" if previous else "")
    elif previous == version:  # a rerun's decision about the champion itself
        what = f"v{version} stays champion"
    elif previous:  # `refused`: the champion it was decided against had moved to `previous` meanwhile
        what = f"v{previous} stays champion; v{version} not promoted"
    else:
        what = f"v{version} not promoted"
    return f"{event['at']}  {event['action']:<8} {what}  by {event['by']}: {event['why']}"


MOVED = {"promote": "promoted", "rollback": "made champion again by a rollback"}


def last_decision(row: dict, event: dict | None) -> str:
    """What happened to a version last: the gate's verdict, or a later move by hand (promote, rollback)."""
    gate = f"{row['gate'] or '-'}: {row['gate_reason'] or ''}"
    if event is None or event["action"] not in MOVED or event["why"] == row["gate_reason"]:
        return gate  # the gate's own decision (its `keep`, `refused` or promotion), or none recorded
    return f"{MOVED[event['action']]} by {event['by']} at {event['at']}: {event['why']}"


def _num(value: str | None, spec: str) -> str:
    """A tag's number formatted with `spec` (e.g. "+8.4f"), or a right-aligned dash when there is none."""
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()))
    if value is None:
        return f"{'-':>{width}}"
    try:
        return format(float(value), spec)
    except ValueError:
        return f"{'-':>{width}}"


def format_listing(listing: dict) -> str:
    lines = [
        f"model {listing['model']}" + (f", its champion serves {listing['serves']}" if listing.get("serves") else ""),
        f"{'version':>7}  {'forecaster':<16} {'aliases':<20} {'test rmse':>10} {'pinball':>8} {'cov80':>6} {'cov90':>6} "
        f"{'skill':>8}  last decision",
    ]
    last = {e["version"]: e for e in listing["champion_history"]}  # oldest first: the last one stays
    for r in listing["versions"]:
        broken = f"  NOT SCORABLE: {r['scoring_error']}" if r.get("scoring_error") else ""
        lines.append(
            f"{r['version']:>7}  {r['forecaster']:<16} {','.join(r['aliases']) or '-':<20} {_num(r['test_rmse'], '10.4f')} "
            f"{_num(r['test_pinball'], '8.4f')} {_num(r['test_coverage_80'], '6.3f')} {_num(r['test_coverage_90'], '6.3f')} "
            f"{_num(r['skill_vs_naive'], '+8.4f')}  {last_decision(r, last.get(r['version']))}{broken}"
        )
    lines.append("\nchampion history (oldest first):")
    lines += [f"  {format_event(e)}" for e in listing["champion_history"]] or ["  (none)"]
    return "\n".join(lines)


Model = Annotated[str, typer.Option(help="registered model name")]
Listed = Annotated[str | None, typer.Option("--model", help="registered model name", show_default="every model")]
By = Annotated[
    str | None, typer.Option(help="who (recorded in the registry)", show_default="$TICKERFLOW_USER or the login name")
]
Json = Annotated[bool, typer.Option("--json", help="print JSON as the last line of stdout")]
Force = Annotated[
    bool, typer.Option("--force", help="move the champion even onto a version whose files cannot be loaded")
]


def promote(
    version: Annotated[int, typer.Option(help="model version to promote")],
    reason: Annotated[str, typer.Option(help="why (recorded in the registry)")] = "promoted by hand",
    by: By = None,
    model: Model = MODEL_NAME,
    json_summary: Json = False,
    force: Force = False,
) -> int:
    """Make a registered version the champion (one that cannot be loaded only with --force)."""
    from tickerflow.tracking.registry import promote_version  # (MLflow: only when the command runs)

    event = promote_version(model, str(version), reason, by, force=force)
    print(f"{model}: {format_event(event)}")
    if json_summary:
        print(json.dumps(event))
    return 0


def rollback(
    reason: Annotated[str, typer.Option(help="why (recorded in the registry)")] = "rolled back by hand",
    by: By = None,
    model: Model = MODEL_NAME,
    json_summary: Json = False,
    force: Force = False,
) -> int:
    """Make the previous champion the champion again (one that cannot be loaded only with --force)."""
    from tickerflow.tracking.registry import rollback_champion  # (MLflow: only when the command runs)

    event = rollback_champion(model, reason, by, force=force)
    print(f"{model}: {format_event(event)}")
    if json_summary:
        print(json.dumps(event))
    return 0


def models(model: Listed = None, json_summary: Json = False) -> int:
    """List the registered models and what their champions serve; with --model, one model's versions, aliases,
    metrics and champion history."""
    # (MLflow: only when the command runs)
    from tickerflow.tracking.registry import models_listing, registered_models

    if model is None:
        found = registered_models()
        print(json.dumps(found) if json_summary else format_models(found))
        return 0
    listing = models_listing(model)
    print(json.dumps(listing, default=str) if json_summary else format_listing(listing))
    return 0


def format_models(found: list[dict]) -> str:
    if not found:
        return "no registered models yet: `tickerflow run` trains and registers one"
    width = max(len(m["model"]) for m in found)
    lines = [f"{'model':<{width}}  {'versions':>8}  {'champion':<20}  serves"]
    for m in found:
        champion = f"v{m['champion']} ({m['forecaster'] or 'gru'})" if m["champion"] else "-"
        lines.append(f"{m['model']:<{width}}  {m['versions']:>8}  {champion:<20}  {m['serves'] or '-'}")
    lines.append("\n`tickerflow models --model NAME` lists a model's versions and champion history")
    return "\n".join(lines)
