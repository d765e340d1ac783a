#!/usr/bin/env python3
"""Writes THIRD-PARTY-NOTICES.txt for one installer: every crate compiled into the shipped
binaries (the normal dependencies of ROOT packages, for one target, from `cargo metadata`), with
its licence expression and the licence files its source carries (identical texts printed once,
with the crates that share them). The libtorch and demo-data notices are copied beside it by
the installer scripts.

usage: notices.py --target TRIPLE --root PACKAGE [--root PACKAGE ...] OUT
"""
import argparse
import json
import pathlib
import subprocess
import sys

LICENCE_PREFIXES = ("license", "licence", "copying", "notice", "copyright", "unlicense")


def crates(target, roots):
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", target],
        check=True, capture_output=True, text=True).stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    workspace = set(meta["workspace_members"])
    todo = [i for i in workspace if packages[i]["name"] in roots]
    if len(todo) != len(roots):
        sys.exit(f"notices.py: not all of {roots} are workspace packages")
    seen = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            # Only what is compiled into the binaries: normal dependencies (not build or dev).
            if any(k["kind"] is None for k in dep["dep_kinds"]):
                todo.append(dep["pkg"])
    return sorted((packages[i] for i in seen - workspace), key=lambda p: (p["name"], p["version"]))


def licence_files(pkg):
    root = pathlib.Path(pkg["manifest_path"]).parent
    files = [f for f in root.iterdir() if f.is_file() and f.name.lower().startswith(LICENCE_PREFIXES)]
    if pkg.get("license_file"):
        named = root / pkg["license_file"]
        if named.is_file() and named not in files:
            files.append(named)
    return sorted(files)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--root", action="append", required=True)
    ap.add_argument("out")
    a = ap.parse_args()
    pkgs = crates(a.target, a.root)
    texts = {}  # licence text -> crates that carry it
    rows = []
    for p in pkgs:
        name = f"{p['name']} {p['version']}"
        rows.append(f"{name:<48} {p.get('license') or 'see its licence file'}   {p.get('repository') or ''}".rstrip())
        files = licence_files(p)
        if not files:
            rows[-1] += "   (no licence file in the published crate)"
        for f in files:
            texts.setdefault(f.read_text(errors="replace").strip(), []).append(f"{name} ({f.name})")
    with open(a.out, "w") as out:
        out.write(f"Third-party notices: the Rust crates compiled into {', '.join(a.root)} for {a.target}\n")
        out.write(f"({len(pkgs)} crates, from `cargo metadata`; licence expression and repository of each, then\n")
        out.write("every licence text their sources carry, each distinct text once with the crates that carry it).\n\n")
        out.write("\n".join(rows) + "\n")
        for text, users in texts.items():
            out.write("\n" + "=" * 100 + "\n")
            out.write("Carried by: " + ", ".join(users) + "\n" + "-" * 100 + "\n")
            out.write(text + "\n")
    print(f"{a.out}: {len(pkgs)} crates, {len(texts)} distinct licence texts", file=sys.stderr)


if __name__ == "__main__":
    main()
