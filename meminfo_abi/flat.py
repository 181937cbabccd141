"""The hot-path form of a fixed-size construct layout: one struct.Struct derived from it.

construct walks a layout field by field; for the 4 KiB os_info page (203 entries) that
costs milliseconds per parse or build.  A layout made only of fixed-size integers, byte
strings, padding and fixed-count arrays of integers or of structs of integers is one
struct format string, which parses and builds in microseconds.  FlatLayout derives that
format from the declaration, so the declaration stays the one place that names the ABI's
fields; nothing here knows a field.

    PAGE = FlatLayout(MemInfoPage)
    PAGE.parse(raw)["crashkernel_addr"]         # the same values MemInfoPage.parse gives,
    PAGE.parse(raw)["entry"][0]                 # array elements as tuples in field order
    PAGE.build({...}) == MemInfoPage.build({...})
"""

from __future__ import annotations

import struct
from typing import Any, Mapping

from construct import Array, Bytes, Construct, Default, FormatField, Padded, Pass, Renamed, Struct

_SCALAR, _BYTES, _ARRAY, _STRUCT = 0, 1, 2, 3


def _unwrap(sub: Construct) -> Construct:
    """The construct under a field's name and its Default (a default changes building from
    nothing, not the wire form)."""
    inner = sub.subcon if isinstance(sub, Renamed) else sub
    while isinstance(inner, Default):
        inner = inner.subcon
    return inner


def field_names(layout: Struct) -> tuple[str, ...]:
    """The named fields of a Struct, in wire order (padding has no name)."""
    return tuple(sc.name for sc in layout.subcons if sc.name)


class FlatLayout:
    """parse(data) -> {field: value}; build({field: value}) -> bytes, with one struct.Struct.

    Scalars are ints, Bytes fields bytes, arrays of integers lists of ints, arrays of
    structs lists of tuples (element fields in declaration order, `element_fields`), nested
    structs dicts of their own fields."""

    def __init__(self, layout: Struct):
        self.layout = layout
        self.element_fields: dict[str, tuple[str, ...]] = {}
        self._plan: list[tuple] = []   # name, kind, first value, count, width (nested: its FlatLayout)
        fmt: list[str] = []
        order = None
        nvalues = 0
        for sub in layout.subcons:
            name = sub.name
            inner = _unwrap(sub)
            if isinstance(inner, Padded) and isinstance(inner.subcon, type(Pass)):
                fmt.append(f"{inner.length}x")
                continue
            if not name:
                raise ValueError(f"unnamed field {inner!r} in a flat layout")
            if isinstance(inner, FormatField):
                order = _same_order(order, inner)
                fmt.append(inner.fmtstr[1:])
                self._plan.append((name, _SCALAR, nvalues, 1, 1))
                nvalues += 1
            elif type(inner) is Bytes and isinstance(inner.length, int):
                fmt.append(f"{inner.length}s")
                self._plan.append((name, _BYTES, nvalues, inner.length, 1))
                nvalues += 1
            elif isinstance(inner, Struct):
                nested = FlatLayout(inner)
                if nested.nvalues:
                    order = _same_order(order, nested.struct.format[0])
                fmt.append(nested.struct.format[1:])
                self._plan.append((name, _STRUCT, nvalues, nested.nvalues, nested))
                nvalues += nested.nvalues
            elif isinstance(inner, Array) and isinstance(inner.count, int):
                element = _unwrap(inner.subcon)
                if type(element) is Bytes and isinstance(element.length, int):
                    fmt.append(f"{element.length}s" * inner.count)      # a list of byte strings
                    self._plan.append((name, _ARRAY, nvalues, inner.count, 0))
                    nvalues += inner.count
                    continue
                if isinstance(element, FormatField):
                    parts = [element]
                elif isinstance(element, Struct):
                    parts = [_unwrap(sc) for sc in element.subcons]
                    if not all(isinstance(p, FormatField) for p in parts) or not all(
                            sc.name for sc in element.subcons):
                        raise ValueError(f"array {name!r}: elements must be structs of named integers")
                    self.element_fields[name] = field_names(element)
                else:
                    raise ValueError(f"array {name!r}: elements must be integers or structs of integers")
                for p in parts:
                    order = _same_order(order, p)
                fmt.append("".join(p.fmtstr[1:] for p in parts) * inner.count)
                width = len(parts) if isinstance(element, Struct) else 0
                self._plan.append((name, _ARRAY, nvalues, inner.count, width))
                nvalues += inner.count * len(parts)
            else:
                raise ValueError(f"field {name!r} ({type(inner).__name__}) has no flat struct form")
        self.nvalues = nvalues
        self.struct = struct.Struct((order or ">") + "".join(fmt))
        self.size = self.struct.size
        if self.size != layout.sizeof():
            raise ValueError(f"flat form has {self.size} bytes, the layout {layout.sizeof()}")

    def parse(self, data, offset: int = 0) -> dict[str, Any]:
        return self._fields(self.struct.unpack_from(data, offset))

    def _fields(self, values) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, kind, first, count, width in self._plan:
            if kind == _STRUCT:
                out[name] = width._fields(values[first:first + count])
            elif kind != _ARRAY:
                out[name] = values[first]
            elif width == 0:
                out[name] = list(values[first:first + count])
            else:
                it = iter(values[first:first + count * width])
                out[name] = list(zip(*[it] * width))
        return out

    def build(self, fields: Mapping[str, Any]) -> bytes:
        return self.struct.pack(*self._flatten(fields))

    def _flatten(self, fields: Mapping[str, Any]) -> list:
        flat: list = []
        for name, kind, _first, count, width in self._plan:
            value = fields[name]
            if kind == _STRUCT:
                flat.extend(width._flatten(value))
                continue
            if kind == _SCALAR:
                flat.append(value)
                continue
            if len(value) != count:      # struct would pad or cut a byte string silently
                raise ValueError(f"{name}: {len(value)} {'bytes' if kind == _BYTES else 'elements'}, "
                                 f"the layout has {count}")
            if kind == _BYTES:
                flat.append(value)
            elif width == 0:
                flat.extend(value)
            else:
                for element in value:
                    if len(element) != width:
                        raise ValueError(f"{name}: an element has {len(element)} fields, the layout {width}")
                    flat.extend(element)
        return flat


def _same_order(order: str | None, field: Construct | str) -> str:
    o = field if isinstance(field, str) else field.fmtstr[0]
    if o not in "<>=!":
        raise ValueError(f"format {field.fmtstr!r} has no fixed byte order")
    if order not in (None, o):
        raise ValueError("mixed byte orders in one layout")
    return o
