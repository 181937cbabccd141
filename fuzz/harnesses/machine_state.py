"""The machine state file (machine.json): load_state / MachineState.from_json, and the state
written back (dump_state) must load again."""

import os

from fuzz.harnesses import _files
from s390_machine.state import STATE_FILE, dump_state, load_state

MAX_LEN = 16384
DICT = (  # libFuzzer dictionary tokens (-dict)
    b'1e999',
    b'-1e999',
    b'NaN',
    b'Infinity',
    b'[[[[[[[[[[[[[[[[',
    b'99999999999999999999999',
    b'"0x',
    b'"format"',
    b'"cpus"',
    b'"crashkernel"',
    b'"memory_size"',
    b'"status"',
    b'"version"',
    b'"address"',
    b'"prefix"',
    b'"psw"',
    b'"vxrs"',
    b'null',
    b'{}',
    b'[]',
)


def target(data: bytes) -> None:
    directory = os.path.dirname(_files.paths(1)[0])
    with open(os.path.join(directory, STATE_FILE), "wb") as fh:
        fh.write(data)
    state = load_state(directory)
    text = dump_state(state)
    with open(os.path.join(directory, STATE_FILE), "w") as fh:
        fh.write(text)
    again = load_state(directory)
    assert dump_state(again) == text, "machine state changes when written back and read again"


def seeds(ctx):
    with open(os.path.join(ctx.machine_dir, "machine.json"), "rb") as fh:
        yield fh.read()
    yield ctx.panicked_state()
