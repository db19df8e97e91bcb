"""The process that holds one student's answers while the judge checks them.

`labkit.course.judge` starts it (`python -m labkit.course.runner REQUESTS RESPONSES`) in an empty
temporary folder, with a scrubbed environment, and talks to it over two pipes (`labkit.course.wire`).
For each check cell it asks to `prepare` a namespace:

1. the master's own code the answer may lean on runs first, trusted, in a setup namespace: the
   notebook's import and definition cells before the check, and labkit's versions of the earlier
   exercises the answer builds on;
2. the answer then runs in a namespace of its own holding only the names its exercise allows (a
   labkit module it may touch is a stand-in with only the allowed members), with restricted
   builtins: no `open`, `exec` or `eval`, imports only of ALLOWED_IMPORTS, no private attribute
   access by name.

Then it answers probes (`labkit.course.probes`) on the names the answer defined, sending back
reports as data. It never sees a grade: the judge compares the reports with labkit's reference
in its own process.
"""

import sys
import types

from labkit.course import wire
from labkit.course.probes import StudentRaised, first_line, run_probe
from labkit.course.screen import runtime_builtins


def stand_in(module, members: list[str]) -> types.SimpleNamespace:
    """A labkit module as an answer may see it: only the members its exercise allows."""
    return types.SimpleNamespace(**{member: getattr(module, member) for member in members})


def prepare(spec: dict) -> dict:
    """The answer's namespace: the master's code in a setup namespace, then the answer alone with
    its allowed names (see the module docstring)."""
    setup: dict = {"__name__": "__main__"}
    for source in spec["context"]:
        exec(compile(source, "<master cell>", "exec"), setup)  # the master's own code: trusted
    namespace = {"__name__": "answer", "__builtins__": runtime_builtins(lambda name: True)}
    for name in spec["allowed"]:
        if name in setup:
            namespace[name] = setup[name]
    for module, members in spec["members"].items():
        if module in setup:
            namespace[module] = stand_in(setup[module], members)
    try:
        exec(compile(spec["answer"], "<answer cell>", "exec"), namespace)
    except Exception as error:  # the answer's own error, reported as the check's failure
        raise StudentRaised("while its answer cell ran", type(error).__name__, first_line(error)) from None
    missing = [name for name in spec["defines"] if name not in namespace]
    if missing:
        raise StudentRaised("", "NotDefined", f"the answer cell does not define {', '.join(missing)}")
    return namespace


def serve(requests: int, responses: int) -> None:
    namespace: dict = {}
    while True:
        try:
            message = wire.receive(requests)
        except wire.WireError:
            return  # the judge is gone
        if message.get("quit"):
            return
        try:
            if "prepare" in message:
                namespace = prepare(message["prepare"])
                reply = {"ready": True}
            else:
                subject = namespace.get(message["name"])
                if subject is None:
                    raise StudentRaised("", "NotDefined", f"the answer cell does not define {message['name']}")
                reply = {"report": run_probe(message["probe"], subject, message["params"])}
        except StudentRaised as error:
            reply = {"error": error.to_dict()}
        except Exception as error:  # a probe that could not run at all, reported rather than hanging the judge
            reply = {"error": {"during": "", "kind": type(error).__name__, "message": first_line(error)}}
        try:
            wire.send(responses, reply)
        except wire.WireError as error:  # a report that is not data: say so instead of dying
            wire.send(responses, {"error": {"during": "", "kind": "TypeError", "message": str(error)}})


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)  # the probes are small; several graders share the machine's cores
    serve(int(argv[0]), int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
