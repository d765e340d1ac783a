#!/usr/bin/env python3
"""Copies the DLLs a Windows executable needs from the given folders into OUT_DIR: its imports,
their imports, and so on, as found in SEARCH_DIR (libtorch's lib folder); anything not found
there is the system's (KERNEL32.dll, the MSVC runtime, …) and is listed, not copied. The Windows
side of what packaging/linux/stage.sh does with DT_NEEDED. Needs the `pefile` module.

usage: dll_closure.py EXE OUT_DIR SEARCH_DIR [SEARCH_DIR ...] [--only GLOB ...]
  --only GLOB: copy only DLLs whose names match one of the globs (the others found are still
  followed), e.g. the MSVC runtime out of System32.
"""
import fnmatch
import pathlib
import shutil
import sys

import pefile


def imports(path):
    pe = pefile.PE(str(path), fast_load=True)
    pe.parse_data_directories(directories=[
        pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
        pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT"],
    ])
    names = [e.dll.decode() for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
    names += [e.dll.decode() for e in getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]
    return names


def main():
    args, only = [], []
    argv = iter(sys.argv[1:])
    for a in argv:
        if a == "--only":
            only.append(next(argv).lower())
        else:
            args.append(a)
    if len(args) < 3:
        sys.exit(__doc__)
    exe, out = pathlib.Path(args[0]), pathlib.Path(args[1])
    search = [pathlib.Path(d) for d in args[2:]]
    # Windows file names are case-insensitive.
    available = {f.name.lower(): f for d in search for f in d.glob("*.dll")}
    out.mkdir(parents=True, exist_ok=True)
    copied, followed, system, todo = set(), set(), set(), [exe]
    while todo:
        for name in imports(todo.pop()):
            key = name.lower()
            if key in copied or key in system or key in followed:
                continue
            if key in available:
                todo.append(available[key])
                if only and not any(fnmatch.fnmatch(key, g) for g in only):
                    followed.add(key)
                    continue
                copied.add(key)
                shutil.copy2(available[key], out / available[key].name)
            else:
                system.add(key)
    size = sum((out / available[k].name).stat().st_size for k in copied)
    print(f"copied {len(copied)} DLLs ({size / 2**20:.0f} MiB): {' '.join(sorted(available[k].name for k in copied))}")
    print(f"left to the system: {' '.join(sorted(system))}")


if __name__ == "__main__":
    main()
