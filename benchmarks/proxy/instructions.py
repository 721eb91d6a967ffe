"""Where each proxy's user-space instructions go, from callgrind (INSTRUCTIONS=1 in run.sh).

Usage: instructions.py NAME=CALLGRIND_FILE:REQUESTS...
  CALLGRIND_FILE is what `callgrind_control -d` wrote after the counters were zeroed, while the proxy served
  REQUESTS requests. Prints two Markdown tables: instructions per request by component (the components of
  profile.py, the kernel aside: callgrind does not see it), and, for the Swift builds, the reference counting calls
  per request by the module that made them. Unlike perf's samples, these counts do not move with the machine's
  speed, so two builds (or a library upgrade) can be compared to the instruction.
"""

import collections
import re
import sys

from profile import COMPONENTS, component

USER_COMPONENTS = [(key, title) for key, title in COMPONENTS if key != "kernel"]
REFCOUNT_CALLS = ("swift_retain", "swift_release")
CALLERS = [("own", "own code"), ("nio", "SwiftNIO, NIOSSL"), ("other", "other")]


class Profile:
    """Self cost per (object, function) and reference-counting calls per calling function, from one file."""

    def __init__(self, path: str):
        self.cost: collections.Counter[tuple[str, str]] = collections.Counter()
        self.refcounts: collections.Counter[tuple[str, str]] = collections.Counter()
        names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}

        def name(kind: str, token: str) -> str:
            # Name compression: "(12) name" defines 12, a later "(12)" refers to it.
            match = re.match(r"\((\d+)\)(?:\s+(.*))?", token)
            if not match:
                return token
            if match.group(2):
                names[kind][match.group(1)] = match.group(2)
            return names[kind].get(match.group(1), "?")

        obj, function, callee, calling = "", "", "", False
        for line in open(path, encoding="utf-8", errors="replace"):
            line = line.rstrip("\n")
            if line.startswith("ob="):
                obj = name("ob", line[3:]).rsplit("/", 1)[-1]
            elif line.startswith("fn="):
                function = name("fn", line[3:])
            elif line.startswith("cob="):
                name("ob", line[4:])
            elif line.startswith("cfn="):
                callee = name("fn", line[4:])
            elif line.startswith("calls="):
                calling = True
                if callee in REFCOUNT_CALLS:
                    self.refcounts[(obj, function)] += int(line[6:].split()[0])
            elif line[:1].isdigit() or line[:1] in ("+", "-", "*"):
                # The cost line after `calls=` is the call's inclusive cost, not the caller's own.
                if not calling:
                    self.cost[(obj, function)] += int(line.split()[-1])
                calling = False


def main() -> None:
    rows = []
    for argument in sys.argv[1:]:
        name, rest = argument.split("=", 1)
        path, requests = rest.rsplit(":", 1)
        rows.append((name, Profile(path), int(requests)))

    print("| proxy | " + " | ".join(title for _, title in USER_COMPONENTS) + " | total |")
    print("|---" * (len(USER_COMPONENTS) + 2) + "|")
    for name, profile, requests in rows:
        per_component = {key: 0.0 for key, _ in USER_COMPONENTS}
        for (obj, function), cost in profile.cost.items():
            per_component[component(obj, function)] += cost / requests
        cells = " | ".join(f"{per_component[key]:.0f}" for key, _ in USER_COMPONENTS)
        print(f"| {name} | {cells} | {sum(per_component.values()):.0f} |")

    swift_rows = [(name, profile, requests) for name, profile, requests in rows if profile.refcounts]
    if swift_rows:
        print()
        print("Swift reference counting calls (swift_retain + swift_release) per request, by the module that made them:")
        print()
        print("| proxy | " + " | ".join(title for _, title in CALLERS) + " | total |")
        print("|---" * (len(CALLERS) + 2) + "|")
        for name, profile, requests in swift_rows:
            per_caller = {key: 0.0 for key, _ in CALLERS}
            for (obj, function), calls in profile.refcounts.items():
                caller = component(obj, function)
                per_caller[caller if caller in per_caller else "other"] += calls / requests
            cells = " | ".join(f"{per_caller[key]:.0f}" for key, _ in CALLERS)
            print(f"| {name} | {cells} | {sum(per_caller.values()):.0f} |")


if __name__ == "__main__":
    main()
