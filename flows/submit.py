"""Start a run of the served ``cohort-analysis`` deployment, follow it, and say how it ended and why.

``prefect deployment run ... --watch`` prints only ``Flow run finished in state 'Failed'``; the reason
(a missing manifest column, a corrupt checkpoint, a locked run folder, the failed videos) was in the UI
only. This wrapper is the documented way to start a run from a shell or a script (docs/scale.md)::

    python -m flows.submit --name default \\
        --params '{"manifest": "/data/cohort.csv", "out": "/data/run1", "weights": "/models/ma52.pt"}'

It prints the run's name, id and UI address, each state change, and at the end the final state with its
message, the one-line reason. Exit codes, as the direct run's (``python -m flows.cohort_analysis``):

- 0: Completed;
- 2: bad input: the server refused the parameters (schema), or the run refused them before any work
  (``RunRefused``: a field, the manifest, the checkpoint; ``RunLocked``: another run holds the folder;
  a foreign file in the way);
- 1: the run failed otherwise (``FlowFailed``: too many videos failed, listed), crashed (its process
  died: docs/scale.md, "Crash recovery") or was cancelled.
"""

from __future__ import annotations

import json
import re
import sys
import time

from flows.console import setup_console
from pipeline.cli import make_parser

__all__ = ["BAD_INPUT_ERRORS", "exit_code_for", "reason", "main"]

# Exception types (as a failed state's message names them) that mean the input was refused, not the work.
BAD_INPUT_ERRORS = ("RunRefused", "RunLocked", "ForeignOutput", "BadInput", "ValidationError",
                    "ParameterTypeError", "SignatureMismatchError")
_EXCEPTION = re.compile(r"encountered an exception: (?:[\w.]+\.)?(\w+): ")


def reason(message: str | None) -> str:
    """The one-line reason of a final state's message (Prefect's "Flow run encountered an exception: "
    prefix removed)."""
    text = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    return re.sub(r"^Flow run encountered an exception: ", "", text)


def exit_code_for(state_type: str, message: str | None) -> int:
    """0 for COMPLETED, 2 when the message names a bad-input error (:data:`BAD_INPUT_ERRORS`), else 1."""
    if state_type == "COMPLETED":
        return 0
    m = _EXCEPTION.search(message or "")
    return 2 if m and m.group(1) in BAD_INPUT_ERRORS else 1


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.split("\n\n")[0], prog="python -m flows.submit")
    parser.add_argument("--name", default="default", help="deployment name (cohort-analysis/NAME, see flows.serve)")
    parser.add_argument("--params", required=True, metavar="JSON", help="the run's params object as JSON")
    parser.add_argument("--no-watch", action="store_true", help="print the run's id and return without waiting")
    parser.add_argument("--poll", type=float, default=2.0, metavar="S", help="seconds between state checks")
    args = parser.parse_args(argv)
    setup_console(verbose=args.verbose, quiet=args.quiet)
    prog = "flows.submit"
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        print(f"{prog}: error: --params is not valid JSON ({exc})", file=sys.stderr)
        return 2
    from pydantic import ValidationError

    from flows.params import CohortAnalysisParams

    try:  # the schema's check, here with the field named (the server would answer the same)
        CohortAnalysisParams(**params)
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"{prog}: error: params.{'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return 2
    except TypeError as exc:
        print(f"{prog}: error: --params must be a JSON object ({exc})", file=sys.stderr)
        return 2
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    if not PREFECT_API_URL.value():
        print(f"{prog}: error: PREFECT_API_URL is not set (docs/scale.md)", file=sys.stderr)
        return 2
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(f"cohort-analysis/{args.name}")
        except ObjectNotFound:
            print(f"{prog}: error: no deployment cohort-analysis/{args.name}; start it with "
                  f"python -m flows.serve --name {args.name}", file=sys.stderr)
            return 2
        try:
            run = client.create_flow_run_from_deployment(deployment.id, parameters={"params": params})
        except PrefectHTTPStatusError as exc:  # the server's schema check (422): which field and why
            detail = exc.response.text
            try:
                detail = json.loads(detail).get("detail", detail)
            except (ValueError, AttributeError):
                pass
            print(f"{prog}: error: the server refused the parameters: {' '.join(str(detail).split())}",
                  file=sys.stderr)
            return 2
        ui = PREFECT_UI_URL.value()
        print(f"flow run {run.name} ({run.id})" + (f": {ui}/runs/flow-run/{run.id}" if ui else ""), flush=True)
        if args.no_watch:
            return 0
        last = None
        while True:
            run = client.read_flow_run(run.id)
            state = run.state
            if state is not None and state.name != last:
                last = state.name
                print(f"state: {state.name}", flush=True)
            if state is not None and state.is_final():
                break
            time.sleep(args.poll)
    why = reason(state.message)
    code = exit_code_for(state.type.value, state.message)
    if code == 0:
        print(f"flow run {run.name} finished: Completed", flush=True)
    else:
        print(f"{prog}: error: flow run {run.name} ended {state.name}" + (f": {why}" if why else ""), file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
