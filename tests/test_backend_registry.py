"""The built-in backends are registered once, in backends.BACKENDS: every command line's
--backend offers exactly those."""

import pytest

import backends
import bench.cli
import bench.interop
import cifar.cli

COMMANDS = {"pynet-bench conv": bench.cli.conv, "pynet-bench all": bench.cli.all_,
            "python -m bench.interop": bench.interop.main, "python -m cifar train": cifar.cli.train,
            "python -m cifar test": cifar.cli.test}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_every_backend_option_offers_the_registered_backends(command):
    option = next(param for param in command.params if param.name == "backend")
    assert tuple(option.type.choices) == backends.BACKENDS
