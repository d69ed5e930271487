#!/usr/bin/env python3
"""What an extension jar needs from a Druid core that the core does not have (before trying it as a fallback).

    tools/druid/linkcheck.py <extension.jar> <cache>/<druid version>/lib [other jars of the extension ...]

Reads the class files themselves (no JVM): for every class of the jar, each class, method, field and constructor it
references must exist in the jar, the other jars given or the core's lib/ (walking superclasses and interfaces), and a
concrete class must implement every abstract method of its supertypes. JDK classes are assumed complete. What this
reports is what the JVM would throw at link or call time (NoClassDefFoundError, NoSuchMethodError,
AbstractMethodError); which of it matters depends on whether the code runs, so a fallback is still proven by running
Druid (tests/druid). Exit status 1 when anything is unresolved.
"""

from __future__ import annotations

import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

JDK_PACKAGES = ("java/", "javax/", "jdk/", "sun/", "com/sun/", "org/w3c/", "org/xml/", "org/ietf/")
OBJECT_METHODS = {"equals", "hashCode", "toString", "getClass", "clone", "finalize", "notify", "notifyAll", "wait"}
ACC_INTERFACE, ACC_ABSTRACT = 0x0200, 0x0400


@dataclass
class ClassInfo:
    name: str
    access: int
    super: str | None
    interfaces: list[str]
    members: set[tuple[str, str, str]]  # ("f"|"m", name, descriptor)
    abstract: set[tuple[str, str]]  # abstract methods: (name, descriptor)
    refs: list[tuple[str, str, str, str]]  # ("f"|"m", owner class, name, descriptor)
    classes: set[str]  # every class constant


def parse(data: bytes) -> ClassInfo:
    """The parts of a class file (JVMS §4) that linking depends on."""
    pos = 8
    (count,) = struct.unpack_from(">H", data, pos)
    pos += 2
    pool: list[tuple | None] = [None] * count
    i = 1
    while i < count:
        tag = data[pos]
        pos += 1
        if tag == 1:  # Utf8
            (length,) = struct.unpack_from(">H", data, pos)
            pool[i] = ("utf8", data[pos + 2:pos + 2 + length].decode("utf-8", "replace"))
            pos += 2 + length
        elif tag == 7:  # Class
            pool[i] = ("class", struct.unpack_from(">H", data, pos)[0])
            pos += 2
        elif tag in (9, 10, 11):  # Fieldref, Methodref, InterfaceMethodref
            owner, name_type = struct.unpack_from(">HH", data, pos)
            pool[i] = ("f" if tag == 9 else "m", owner, name_type)
            pos += 4
        elif tag == 12:  # NameAndType
            pool[i] = ("nt", *struct.unpack_from(">HH", data, pos))
            pos += 4
        elif tag in (5, 6):  # Long, Double take two slots
            pos += 8
            i += 1
        else:  # Integer, Float, String, MethodHandle, MethodType, Dynamic, InvokeDynamic, Module, Package
            pos += {3: 4, 4: 4, 8: 2, 15: 3, 16: 2, 17: 4, 18: 4, 19: 2, 20: 2}[tag]
        i += 1

    def utf8(k: int) -> str:
        return pool[k][1]

    def class_name(k: int) -> str:
        return utf8(pool[k][1])

    access, this, sup = struct.unpack_from(">HHH", data, pos)
    pos += 6
    (n_interfaces,) = struct.unpack_from(">H", data, pos)
    pos += 2
    interfaces = [class_name(struct.unpack_from(">H", data, pos + 2 * j)[0]) for j in range(n_interfaces)]
    pos += 2 * n_interfaces
    members, abstract = set(), set()
    for kind in ("f", "m"):
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        for _ in range(n):
            flags, name, desc, n_attrs = struct.unpack_from(">HHHH", data, pos)
            pos += 8
            members.add((kind, utf8(name), utf8(desc)))
            if kind == "m" and flags & ACC_ABSTRACT:
                abstract.add((utf8(name), utf8(desc)))
            for _ in range(n_attrs):
                pos += 6 + struct.unpack_from(">I", data, pos + 2)[0]
    refs, classes = [], set()
    for entry in pool:
        if entry and entry[0] == "class":
            classes.add(utf8(entry[1]))
        elif entry and entry[0] in ("f", "m"):
            nt = pool[entry[2]]
            refs.append((entry[0], class_name(entry[1]), utf8(nt[1]), utf8(nt[2])))
    return ClassInfo(class_name(this), access, class_name(sup) if sup else None, interfaces, members, abstract,
                     refs, classes)


def unresolved(jar: Path, lib: Path, extra: list[Path]) -> list[str]:
    where: dict[str, Path] = {}
    for j in [jar, *extra, *sorted(lib.glob("*.jar"))]:
        with zipfile.ZipFile(j) as z:
            for n in z.namelist():
                if n.endswith(".class") and not n.startswith("META-INF/"):
                    where.setdefault(n[:-6], j)
    cache: dict[str, ClassInfo | None] = {}

    def info(name: str) -> ClassInfo | None:
        if name not in cache:
            j = where.get(name)
            cache[name] = parse(zipfile.ZipFile(j).read(name + ".class")) if j else None
        return cache[name]

    def supertypes(c: ClassInfo) -> list[str]:
        return ([c.super] if c.super else []) + c.interfaces

    def has(owner: str, kind: str, name: str, desc: str) -> bool:
        if owner.startswith("["):
            return True
        if owner == "java/lang/Object":
            return kind == "m" and (name in OBJECT_METHODS or (name, desc) == ("<init>", "()V"))
        c = info(owner)
        if c is None:
            return owner.startswith(JDK_PACKAGES)  # assumed complete
        if (kind, name, desc) in c.members:
            return True
        if name == "<init>":  # constructors are not inherited
            return False
        return any(has(s, kind, name, desc) for s in supertypes(c))

    def ancestors(c: ClassInfo, seen: list[str]) -> list[str]:
        if c.name not in seen:
            seen.append(c.name)
            for s in supertypes(c):
                if (sc := info(s)) is not None:
                    ancestors(sc, seen)
        return seen

    def implemented(c: ClassInfo, name: str, desc: str) -> bool:
        if name in OBJECT_METHODS:  # java.lang.Object implements them for every class
            return True
        return any((a := info(n)) and ("m", name, desc) in a.members and (name, desc) not in a.abstract
                   for n in ancestors(c, []))

    problems: set[str] = set()
    for name in (n[:-6] for n in zipfile.ZipFile(jar).namelist() if n.endswith(".class")):
        c = info(name)
        if not c.access & (ACC_INTERFACE | ACC_ABSTRACT):
            for a in ancestors(c, [])[1:]:
                for m, desc in info(a).abstract:
                    if not implemented(c, m, desc):
                        problems.add(f"{name}: does not implement {a}.{m}{desc}")
        for ref in c.classes:
            ref = ref.lstrip("[")
            ref = ref[1:-1] if ref.startswith("L") and ref.endswith(";") else ref
            if len(ref) > 1 and not ref.startswith(JDK_PACKAGES) and ref not in where:
                problems.add(f"{name}: class {ref} missing")
        for kind, owner, m, desc in c.refs:
            if owner in where and not has(owner, kind, m, desc):
                problems.add(f"{name}: {'method' if kind == 'm' else 'field'} {owner}.{m}{desc} missing")
    return sorted(problems)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    problems = unresolved(Path(argv[0]), Path(argv[1]), [Path(a) for a in argv[2:]])
    print(f"{len(problems)} unresolved")
    for p in problems:
        print(f"  {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
