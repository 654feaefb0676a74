"""`aligneval env`: the machine as aligneval sees it (device, processes, threads, versions, attack
recipes), for bug reports. Everything heavy is imported inside the command."""

from __future__ import annotations

import typer

PACKAGES = ("aligneval", "torch", "transformers", "tokenizers", "huggingface-hub", "accelerate", "safetensors",
            "datasets", "textattack", "flair", "nltk", "numpy", "scipy", "netcal", "scikit-learn", "pandas",
            "pyarrow", "typer", "rich")


def register(app: typer.Typer) -> None:
    @app.command("env")
    def env_command(
        device: str = typer.Option(None, "--device", help="Show what this --device resolves to (default auto)."),
        as_json: bool = typer.Option(False, "--json", help="One JSON document instead of a table."),
    ) -> int:
        """Print device, process count, threads, package versions and which attack recipes run here."""
        import json

        info = collect(device)
        if as_json:
            typer.echo(json.dumps(info, indent=1))
        else:
            _print(info)
        return 0


def collect(device: str | None = None) -> dict:
    """The facts `env` prints, as a plain dict (also handy in tests and notebooks)."""
    import os
    import platform
    import sys

    from aligneval import distributed
    from aligneval.versions import cpu_description, package_versions

    request = distributed.check_device(device)
    import torch

    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    packages = package_versions(PACKAGES)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_description(),
        "device": {"request": request,
                   "resolved": distributed.Runtime(local_rank=_local_rank()).device(request),
                   "cuda": {"available": cuda, "devices": gpus,
                            "version": getattr(torch.version, "cuda", None)},
                   "mps": distributed._mps_available()},
        "processes": {"world_size": distributed.launched_world_size(),
                      "rank": int(os.environ.get("RANK", 0) or 0),
                      "launcher": _launcher()},
        "threads": {"torch": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
                    "cpu_count": os.cpu_count(), "usable_cpus": affinity,
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "packages": packages,
        "attack": _attack(),
        "recipes": _recipes(),
    }


def _local_rank() -> int:
    import os

    try:
        return int(os.environ.get("LOCAL_RANK", 0) or 0)
    except ValueError:
        return 0


def _launcher() -> str | None:
    import os

    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env or "LOCAL_WORLD_SIZE" in env:
        return "torchrun / accelerate launch"
    if "OMPI_COMM_WORLD_SIZE" in env or "PMI_SIZE" in env:
        return "mpirun"
    if "SLURM_JOB_ID" in env:
        return "slurm (no torch.distributed variables: one process)"
    return None


def _attack() -> dict:
    """How TextAttack would start here: missing requirements, real flair or aligneval's stand-in."""
    from aligneval.attack.loader import INSTALL_ATTACK, INSTALL_FLAIR, missing_attack_modules, real_flair_installed

    missing = missing_attack_modules()
    flair = "real" if real_flair_installed() else "stand-in (flair not installed; its taggers are unavailable)"
    return {"missing": missing, "install": INSTALL_ATTACK if missing else None, "flair": flair,
            "install_flair": None if real_flair_installed() else INSTALL_FLAIR}


def _recipes() -> dict[str, str | None]:
    """recipe -> None when it can run here, else the one-line reason (the `attack --list` registry)."""
    from aligneval.attack.recipes import RECIPES, unavailable_reason

    return {name: unavailable_reason(name) for name in RECIPES.names()}


def _print(info: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from aligneval.versions import cpu_line

    console = Console(width=140)
    dev = info["device"]
    cuda = dev["cuda"]
    lines = [
        f"python      {info['python']} on {info['platform']}",
        f"device      {dev['resolved']} (--device {dev['request']}); CUDA "
        + (f"{cuda['version']}: {', '.join(cuda['devices'])}" if cuda["available"] else "not available")
        + f"; MPS {'available' if dev['mps'] else 'not available'}",
        f"processes   {info['processes']['world_size']}"
        + (f" (rank {info['processes']['rank']}, {info['processes']['launcher']})"
           if info["processes"]["launcher"] else " (no launcher; --num-processes N or accelerate launch adds more)"),
        "cpu         " + cpu_line(info["cpu"]),
        f"threads     torch {info['threads']['torch']} (interop {info['threads']['torch_interop']}), "
        f"CPUs {info['threads']['usable_cpus'] or info['threads']['cpu_count']}, "
        f"OMP_NUM_THREADS={info['threads']['OMP_NUM_THREADS'] or 'unset'}",
        "packages    " + ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v is not None),
    ]
    missing = [k for k, v in info["packages"].items() if v is None]
    if missing:
        lines.append(f"not installed: {', '.join(missing)}")
    attack = info["attack"]
    if attack["missing"]:
        lines.append(f"attacks     need {', '.join(attack['missing'])}: {attack['install']}")
    else:
        lines.append(f"attacks     TextAttack ready; flair: {attack['flair']}")
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    table = Table(title="attack recipes")
    table.add_column("recipe")
    table.add_column("runs here")
    table.add_column("why not")
    for name, reason in info["recipes"].items():
        table.add_row(name, "yes" if reason is None else "no", escape(reason or ""))
    console.print(table)
