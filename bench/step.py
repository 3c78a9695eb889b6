"""``python -m bench.step``: seconds per training step of a preset's network, per variant,
width and crop size, measured side by side.

What a wider network costs, what smaller crops in the early epochs (`early_crops`) save, or
what another setting (`--variant model.activation=relu`) changes, decide whether a change
fits the wall-clock budget; this measures it with the trainer's own `Engine` step
(optimisers, Lookahead and all) on random images. Each round times every (variant, widths,
size) triple once, `--steps` steps after one warm-up step, and keeps the fastest of them; the
table gives the median over the rounds and its ratio to the first triple's.
"""

from __future__ import annotations

import copy
import statistics
import time

import click
import torch

from cifar.engine import Engine
from cifar.presets import PRESETS, resolve_config


def _positive_ints(text: str, option: str) -> list[int]:
    """"48,128,128" -> [48, 128, 128]; a usage error naming `option` otherwise."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers, got {text!r}",
                                 param_hint=option)
    return values


def _parse_widths(ctx: click.Context, param: click.Parameter, texts: tuple[str, ...]
                  ) -> list[list[int]]:
    return [_positive_ints(text, "--widths") for text in texts]


def _parse_sizes(ctx: click.Context, param: click.Parameter, text: str) -> list[int]:
    return _positive_ints(text, "--sizes")


def _variant_error(exc: Exception) -> click.BadParameter:
    """A bad --variant setting, worded as the trainer's --set words it, without "--set"."""
    text = str(exc.args[0] if exc.args else exc)
    return click.BadParameter(text.removeprefix("--set: ").removeprefix("--set "),
                              param_hint="--variant")


def _parse_variants(ctx: click.Context, param: click.Parameter, texts: tuple[str, ...]
                    ) -> list[tuple[str, list[str]]]:
    """(label, settings) of the preset as it is, then of each --variant "KEY=VALUE ..."; `main`
    checks the settings when it resolves each variant's config."""
    return [("preset", []), *((" ".join(text.split()), text.split()) for text in texts)]


def step_seconds(engine: Engine, batch_size: int, size: int, steps: int) -> float:
    """The fastest of `steps` training steps of the last epoch on random `size`-pixel images
    (after a warm-up)."""
    inputs = torch.randn(batch_size, 3, size, size)
    if engine.config["channels_last"]:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,))
    engine.start_epoch(engine.config["epochs"] - 1)  # the last epoch's step, the usual one
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        engine.train_step(inputs, labels)
        times.append(time.perf_counter() - start)
    return min(times[1:])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="fast", show_default=True)
@click.option("--widths", "widths", multiple=True, metavar="A,B,C", callback=_parse_widths,
              help="Widths of the network's three groups; repeat to compare. "
                   "[default: the preset's]")
@click.option("--variant", "variants", multiple=True, metavar='"KEY=VALUE ..."',
              callback=_parse_variants,
              help="Settings applied to the preset, as train's --set (space-separated, no "
                   "spaces inside a value); repeat to compare. The preset itself comes first. "
                   "whiten_bias_epochs=10 times the step of the epochs that train the "
                   "whitening bias.")
@click.option("--sizes", default="32", show_default=True, metavar="S,...", callback=_parse_sizes,
              help="Image sizes to time each network at (e.g. 32,24).")
@click.option("--batch-size", type=click.IntRange(1), help="[default: the preset's]")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=2, show_default=True,
              help="Timed steps per pair and round (the fastest counts).")
def main(preset: str, widths: list[list[int]], variants: list[tuple[str, list[str]]],
         sizes: list[int], batch_size: int | None, threads: int, rounds: int, steps: int
         ) -> None:
    """Time a training step of PRESET's network for each --variant, --widths and --sizes."""
    torch.set_num_threads(threads)
    configs = {}
    for label, settings in variants:
        try:
            configs[label] = resolve_config(preset, settings, device="cpu", threads=threads)
        except (KeyError, ValueError) as exc:
            raise _variant_error(exc) from None
    base = configs["preset"]
    batch_size = batch_size or base["batch_size"]
    groups = len(base["model"]["widths"])
    for width in widths:
        if len(width) != groups:
            raise click.BadParameter(f"expected {groups} widths for preset {preset!r}, got "
                                     f"{width}", param_hint="--widths")
    engines = {}
    for label, config in configs.items():
        for width in widths or [config["model"]["widths"]]:
            sized = copy.deepcopy(config)
            sized["model"]["widths"] = width
            torch.manual_seed(0)
            key = label, ",".join(map(str, width))
            engines[key] = Engine(sized, steps_per_epoch=1000, device=torch.device("cpu"))
    triples = [(*key, size) for key in engines for size in sizes]
    seconds: dict[tuple[str, str, int], list[float]] = {triple: [] for triple in triples}
    for _ in range(rounds):
        for label, width, size in triples:
            seconds[label, width, size].append(
                step_seconds(engines[label, width], batch_size, size, steps))
    first = statistics.median(seconds[triples[0]])
    click.echo(f"{preset}, batch {batch_size}, {threads} threads, {rounds} rounds\n"
               "| variant | widths | size | step (s), median | × first |\n|---|---|---|---|---|")
    for label, width, size in triples:
        median = statistics.median(seconds[label, width, size])
        click.echo(f"| {label} | {width} | {size} | {median:.3f} | {median / first:.2f} |")


if __name__ == "__main__":
    main()
