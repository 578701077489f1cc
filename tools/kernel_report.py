#!/usr/bin/env python3
"""Static report and checks of the sm_90 machine code of the CUDA kernels.

Reads what nvcc left in the objects of the ddpm_kernels library (or any .o / .a
given) with NVIDIA's cuobjdump, and writes one Markdown table row per kernel:
registers, stack frame, local-memory (spill) stores and loads, static shared memory,
block size (from __launch_bounds__), theoretical occupancy on an H100/H200 SM, and
the counts of the tensor-core and data-movement instructions the bf16 kernels are
built on (HMMA: mma.sync, LDSM: ldmatrix, LDGSTS: cp.async).

Three cuobjdump listings per object, all restricted to the sm_90 ELF:
  --dump-resource-usage  REG / STACK / SHARED / LOCAL per function;
  -sass                  instruction counts per function (STL/LDL are the local-memory
                         stores/loads: register spills, or local arrays, which cost the
                         same in a hot loop);
  -elf                   the .nv.info.<kernel> attributes: EIATTR_MAX_THREADS is
                         __launch_bounds__'s maximum threads per block (EIATTR_REQNTID,
                         an exact block size, wins where present).

Checks (exit status 1 when any fails):
  - a HOT kernel (HOT_PATTERNS) with local-memory traffic, unless KNOWN_SPILLS names it
    and its traffic has not grown past what is recorded there; elsewhere a warning;
  - INSTRUCTION_RULES: a kernel matching a rule's pattern lacks a required instruction,
    or a rule marked must_match matches no kernel at all.
Patterns are shell globs (fnmatch, case-sensitive) matched against the kernel's
"subject": "<source file>:<demangled name>", e.g.
  "conv2d_tensor_core.cu:void ddpm::kernels::detail::(anonymous namespace)::conv_...".
so a pattern can name a source file ("gemm_bf16.cu:*"), a kernel ("*:*gemm_bf16*"), or
either ("*gemm_bf16*").

Standard library only.  Usually run through tools/kernel_report.sh, which finds
cuobjdump; exit status 2 means the report could not be made (no cuobjdump, no sm_90
code, unreadable input).

    python3 tools/kernel_report.py --cuobjdump PATH build/kernels/libddpm_kernels.a
"""

import argparse
import concurrent.futures
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ARCH = "sm_90"

# H100/H200 (compute capability 9.0) per-SM limits, from the CUDA C Programming
# Guide's table of technical specifications and the occupancy calculator's model.
SM90 = {
    "regs_per_sm": 65536,
    "max_regs_per_thread": 255,
    "max_regs_per_block": 65536,
    "reg_alloc_unit": 256,  # registers are allocated per warp in units of 256
    "sub_partitions": 4,  # a warp's registers live in one of the 4 SMSP register files
    "smem_per_sm": 228 * 1024,  # the largest shared-memory carveout
    "max_smem_per_block": 227 * 1024,
    "smem_reserved_per_block": 1024,  # the runtime reserves 1 KB of shared memory per block
    "smem_alloc_unit": 128,
    "max_threads_per_sm": 2048,
    "max_warps_per_sm": 64,
    "max_blocks_per_sm": 32,
    "warp_size": 32,
}

# The hot kernel families: where a spill costs a fraction of a training step.
# Convolution (direct, SIMT implicit GEMM, tensor core, bf16), GEMM (linear
# layers), attention, group norm and the elementwise kernels. A spill in one of
# these fails the check; a spill anywhere else is a warning. Matched against
# "<source file>:<demangled name>"; the bf16 files (conv2d_bf16.cu, gemm_bf16.cu,
# attention_bf16.cu, ...) are covered by the same globs.
HOT_PATTERNS = (
    "conv2d*.cu:*",
    "gemm*.cu:*",
    "attention*.cu:*",
    "group_norm*.cu:*",
    "elementwise*.cu:*",
)


@dataclass(frozen=True)
class KnownSpill:
    """A hot kernel allowed to keep the local-memory traffic it has today, no more.

    The counts are the STL and LDL instructions in its sm_90 SASS when the exception was
    written: more fails the check (a regression), fewer is reported as a note (tighten or
    remove the entry)."""

    pattern: str
    max_stores: int
    max_loads: int
    why: str


# Hot kernels with local-memory traffic when this check was introduced (CUDA 13.0
# nvcc, sm_90), pinned at their STL/LDL counts of then. All but the last are register
# caps set on purpose by __launch_bounds__(threads, min_blocks), costing 4-48 bytes
# of spill. An entry is a debt, not a blessing: fix the kernel, delete the entry.
KNOWN_SPILLS = (
    KnownSpill("gemm.cu:*gemm_simt_kernel<*TileConfig<64, 64, 16, 8, 8, 4>*", 1, 1,
               "__launch_bounds__(256, 2) caps it at 128 registers (gemm.cu); one "
               "4-byte value spilled"),
    KnownSpill("conv2d_simt.cu:*conv_gemm_kernel<*TileConfig<128, 128, 8, 8, 2>*"
               "BackwardDataProblem<1>*", 9, 12,
               "the 128x128 tile under its launch bounds' 128-register cap: 36 bytes "
               "stored, 48 loaded"),
    KnownSpill("attention.cu:*attention_forward_kernel<*QueryTiles<256>*", 4, 4,
               "the 128-register cap of its launch bounds: 16 bytes"),
    KnownSpill("attention.cu:*attention_forward_kernel<*QueryTiles<16>*", 1, 1,
               "the 128-register cap of its launch bounds: 8 bytes (one STL.64)"),
    KnownSpill("elementwise.cu:*timestep_embedding_kernel*", 4, 6,
               "not a register spill: the local array of sinf/cosf's Payne-Hanek "
               "argument reduction, a path taken only for |x| > 105615 (arguments here "
               "stay below ~1000 rad); a kernel of batch x dim values, run once a step"),
    KnownSpill("elementwise_bf16.cu:*timestep_embedding_kernel*", 4, 6,
               "the same sinf/cosf slow-path array as elementwise.cu's (bf16 output)"),
)


@dataclass(frozen=True)
class InstructionRule:
    """Kernels matching `pattern` must contain every opcode of `required` (SASS base
    opcode, e.g. HMMA, LDSM, LDGSTS). The FIRST matching rule decides: to exempt a
    kernel of a family (a helper kernel, a path that cannot use the instruction), put a
    narrower rule with required=() ABOVE the family's rule, saying why. must_match: the
    rule fails when no kernel matches it (guards against a rename silently disabling it)."""

    pattern: str
    required: tuple
    why: str
    must_match: bool = False


INSTRUCTION_RULES = (
    # Exemptions first: the bf16 families' kernels that do no matrix product.
    InstructionRule("conv2d_bf16.cu:*column_sum_bf16_kernel*", (),
                    "bias gradient of the bf16 conv: a column sum, no matrix product"),
    InstructionRule("conv2d_bf16.cu:*split_sum_kernel*", (),
                    "split-K of the bf16 conv: sums the fp32 partial tiles"),
    InstructionRule("gemm_bf16.cu:*gemm_bf16_split_epilogue_kernel*", (),
                    "split-K of the bf16 GEMM: sums the fp32 partials, runs the epilogue"),
    InstructionRule("attention_bf16.cu:*attention_bf16_row_dot_kernel*", (),
                    "bf16 attention backward's D = rowsum(dO * O): a row dot product"),
    # The tensor-core kernels.
    InstructionRule("conv2d_tensor_core.cu:*", ("HMMA",),
                    "fp32-in-global tensor-core conv: mma.sync; it converts fp32 to bf16 "
                    "in registers and stores to shared memory, so no LDSM/LDGSTS",
                    must_match=True),
    InstructionRule("*conv2d_bf16*", ("HMMA", "LDSM", "LDGSTS"),
                    "bf16 conv (issue 11): cp.async staging, ldmatrix, mma.sync"),
    InstructionRule("*gemm_bf16*", ("HMMA", "LDSM", "LDGSTS"),
                    "bf16 GEMM (issue 11): cp.async staging, ldmatrix, mma.sync"),
    InstructionRule("*attention_bf16*", ("HMMA", "LDSM", "LDGSTS"),
                    "bf16 attention (issue 11): cp.async staging, ldmatrix, mma.sync"),
)

# Dynamic shared memory is not in the cubin. Kernels that use it can be given their
# launch's bytes here (pattern -> bytes) so that the occupancy column counts it;
# elsewhere occupancy counts static shared memory only.
DYNAMIC_SMEM_BYTES = {}

INSTRUCTIONS_SHOWN = ("HMMA", "LDSM", "LDGSTS")


@dataclass
class Kernel:
    source: str  # the .cu file, from the object's name
    mangled: str
    demangled: str = ""
    regs: int = 0
    stack: int = 0
    shared: int = 0  # cuobjdump's SHARED: static + the 1 KB system reservation
    local: int = 0
    max_threads: int | None = None  # threads per block from the launch bounds
    opcodes: Counter = field(default_factory=Counter)
    store_bytes: int = 0  # STL bytes
    load_bytes: int = 0  # LDL bytes

    @property
    def subject(self):
        return f"{self.source}:{self.demangled or self.mangled}"

    @property
    def static_smem(self):
        """The kernel's own static shared memory (ptxas -v's "bytes smem"). On sm_90
        cuobjdump's SHARED (the .nv.shared.<kernel> section) also spans the 1 KB that the
        system reserves at the bottom of every block's shared window, whenever the module
        has that reservation: SHARED is 1024 for a kernel with none of its own or only
        dynamic shared memory, 1536 for 512 static bytes (checked against ptxas -v)."""
        reserved = SM90["smem_reserved_per_block"]
        return self.shared - reserved if self.shared >= reserved else self.shared

    @property
    def stores(self):
        return self.opcodes["STL"]

    @property
    def loads(self):
        return self.opcodes["LDL"]

    @property
    def spills(self):
        return self.stores + self.loads > 0 or self.local > 0


# --- parsing cuobjdump's listings ---------------------------------------------------

RESOURCE_FUNCTION = re.compile(r"^\s*Function\s+(\S+?):\s*$")
RESOURCE_VALUES = re.compile(r"\b(REG|STACK|SHARED|LOCAL):(\d+)")


def parse_resource_usage(text):
    """{mangled name: {"REG": n, "STACK": n, "SHARED": n, "LOCAL": n}}."""
    result, current = {}, None
    for line in text.splitlines():
        m = RESOURCE_FUNCTION.match(line)
        if m:
            current = m.group(1)
            continue
        if current and "REG:" in line:
            result[current] = {k: int(v) for k, v in RESOURCE_VALUES.findall(line)}
            current = None
    return result


SASS_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)\s*$")
# "/*0070*/   @!P0 IADD3 R1, R1, -0x8, RZ ;" -> IADD3 (predicate and modifiers dropped)
SASS_INSTRUCTION = re.compile(
    r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)((?:\.[A-Z0-9_]+)*)")
LOCAL_WIDTH = {"U8": 1, "S8": 1, "U16": 2, "S16": 2, "64": 8, "128": 16}


def parse_sass(text):
    """{mangled name: (Counter of base opcodes, STL bytes, LDL bytes)}."""
    result, current = {}, None
    for line in text.splitlines():
        m = SASS_FUNCTION.match(line)
        if m:
            current = [Counter(), 0, 0]
            result[m.group(1)] = current
            continue
        if current is None:
            continue
        m = SASS_INSTRUCTION.match(line)
        if not m:
            continue
        opcode = m.group(1)
        current[0][opcode] += 1
        if opcode in ("STL", "LDL"):
            width = 4
            for modifier in m.group(2).split(".")[1:]:
                width = LOCAL_WIDTH.get(modifier, width)
            current[1 if opcode == "STL" else 2] += width
    return {name: tuple(v) for name, v in result.items()}


def parse_elf_info(text):
    """{mangled name: threads per block} from the .nv.info.<name> sections: the product
    of EIATTR_REQNTID where present, else of EIATTR_MAX_THREADS (x y z)."""
    bounds, current, attribute = {}, None, None
    for line in text.splitlines():
        if line.startswith(".nv.info."):
            current, attribute = line[len(".nv.info."):].strip(), None
            continue
        if line and not line[0].isspace():
            current = None  # another section
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("Attribute:"):
            attribute = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("Value:") and attribute in ("EIATTR_MAX_THREADS",
                                                              "EIATTR_REQNTID"):
            dims = [int(v, 0) for v in stripped.split(":", 1)[1].split()]
            threads = 1
            for d in dims:
                threads *= d
            entry = bounds.setdefault(current, {})
            entry[attribute] = threads
    return {
        name: v.get("EIATTR_REQNTID", v.get("EIATTR_MAX_THREADS"))
        for name, v in bounds.items()
    }


def has_arch_elf(resource_text, arch=ARCH):
    """True when the listing has an ELF (machine code) section for `arch`."""
    return re.search(r"Fatbin elf code:\s*=+\s*arch = " + arch + r"\b", resource_text) is not None


def demangle(names):
    """Itanium names -> demangled, through c++filt (binutils; the toolkit's cu++filt
    where it exists); names unchanged when neither is found."""
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    names = list(names)
    if not tool or not names:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names) + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    if len(out) != len(names):
        return {n: n for n in names}
    return dict(zip(names, out))


def short_name(demangled):
    """The demangled name without return type, namespaces and parameter list."""
    name = demangled
    for prefix in ("ddpm::kernels::", "detail::", "(anonymous namespace)::"):
        name = name.replace(prefix, "")
    if name.startswith("void "):
        name = name[len("void "):]
    # cut the parameter list: the first '(' at template depth 0
    depth = 0
    for i, ch in enumerate(name):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0 and i > 0:
            return name[:i]
    return name


def kernels_from_listings(source, resource_text, sass_text, elf_text):
    """The Kernel records of one object's three listings."""
    resources = parse_resource_usage(resource_text)
    sass = parse_sass(sass_text)
    bounds = parse_elf_info(elf_text)
    kernels = []
    for name, values in resources.items():
        k = Kernel(source=source, mangled=name, regs=values.get("REG", 0),
                   stack=values.get("STACK", 0), shared=values.get("SHARED", 0),
                   local=values.get("LOCAL", 0), max_threads=bounds.get(name))
        if name in sass:
            k.opcodes, k.store_bytes, k.load_bytes = sass[name]
        kernels.append(k)
    return kernels


# --- occupancy ----------------------------------------------------------------------


def round_up(value, unit):
    return -(-value // unit) * unit


def occupancy(regs, smem_bytes, threads, sm=SM90):
    """Resident blocks and warps per SM and the limiting resource, the occupancy
    calculator's way: registers are allocated per warp (regs x 32 rounded up to 256)
    from one of 4 sub-partition register files; each block takes its shared memory
    (rounded up to 128 bytes) plus 1 KB reserved; at most 64 warps and 32 blocks."""
    warps = -(-threads // sm["warp_size"])
    limits = {"blocks": sm["max_blocks_per_sm"], "warps": sm["max_warps_per_sm"] // warps}
    if regs > 0:
        per_warp = round_up(regs * sm["warp_size"], sm["reg_alloc_unit"])
        if regs > sm["max_regs_per_thread"] or per_warp * warps > sm["max_regs_per_block"]:
            limits["registers"] = 0
        else:
            per_partition = (sm["regs_per_sm"] // sm["sub_partitions"]) // per_warp
            limits["registers"] = per_partition * sm["sub_partitions"] // warps
    smem = round_up(smem_bytes, sm["smem_alloc_unit"]) + sm["smem_reserved_per_block"]
    if smem_bytes > sm["max_smem_per_block"]:
        limits["shared memory"] = 0
    else:
        limits["shared memory"] = sm["smem_per_sm"] // smem
    blocks = min(limits.values())
    limiter = ", ".join(k for k, v in limits.items() if v == blocks)
    return blocks, blocks * warps, limiter


def registers_warp_limit(regs, sm=SM90):
    """Warps per SM that the registers alone allow (block size unknown)."""
    per_warp = round_up(max(regs, 1) * sm["warp_size"], sm["reg_alloc_unit"])
    per_partition = (sm["regs_per_sm"] // sm["sub_partitions"]) // per_warp
    return min(per_partition * sm["sub_partitions"], sm["max_warps_per_sm"])


# --- checks -------------------------------------------------------------------------


def first_rule(subject, rules):
    for rule in rules:
        if fnmatch.fnmatchcase(subject, rule.pattern):
            return rule
    return None


def check(kernels, rules=INSTRUCTION_RULES, hot=HOT_PATTERNS, known=KNOWN_SPILLS):
    """(failures, warnings, notes): lists of strings. Failures name the check first:
    "hot-spill", "missing-instruction" or "rule-unmatched"."""
    failures, warnings, notes = [], [], []
    used = Counter()
    for k in kernels:
        name = f"{k.source}: {short_name(k.demangled or k.mangled)}"
        if k.spills:
            traffic = (f"{k.stores} STL ({k.store_bytes} B) / {k.loads} LDL "
                       f"({k.load_bytes} B), stack {k.stack} B, local {k.local} B")
            if any(fnmatch.fnmatchcase(k.subject, p) for p in hot):
                exception = next((e for e in known if fnmatch.fnmatchcase(k.subject, e.pattern)),
                                 None)
                if exception is None:
                    failures.append(f"hot-spill: {name} spills: {traffic}")
                elif k.stores > exception.max_stores or k.loads > exception.max_loads or k.local:
                    failures.append(
                        f"hot-spill: {name} spills more than its KNOWN_SPILLS entry allows "
                        f"({exception.max_stores} STL / {exception.max_loads} LDL): {traffic}")
                else:
                    used[exception.pattern] += 1
                    warnings.append(f"known spill (KNOWN_SPILLS): {name}: {traffic}")
            else:
                warnings.append(f"spill outside the hot families: {name}: {traffic}")
        rule = first_rule(k.subject, rules)
        if rule is not None:
            used[rule.pattern] += 1
            missing = [op for op in rule.required if k.opcodes[op] == 0]
            if missing:
                failures.append(f"missing-instruction: {name} has no {', '.join(missing)} "
                                f"in its SASS (rule '{rule.pattern}': {rule.why})")
    for rule in rules:
        if used[rule.pattern] == 0:
            if rule.must_match:
                failures.append(f"rule-unmatched: no kernel matches rule '{rule.pattern}' "
                                f"({rule.why}); renamed or removed?")
            else:
                notes.append(f"rule '{rule.pattern}' matches no kernel yet")
    for e in known:
        if used[e.pattern] == 0:
            notes.append(f"KNOWN_SPILLS entry '{e.pattern}' matches no spilling kernel: "
                         "remove it")
        else:
            for k in kernels:
                if fnmatch.fnmatchcase(k.subject, e.pattern) and k.spills and (
                        k.stores < e.max_stores or k.loads < e.max_loads):
                    notes.append(f"KNOWN_SPILLS entry '{e.pattern}': "
                                 f"{short_name(k.demangled)} now has {k.stores} STL / "
                                 f"{k.loads} LDL: tighten the entry")
    return failures, warnings, notes


# --- the report ---------------------------------------------------------------------


def dynamic_smem(kernel):
    for pattern, size in DYNAMIC_SMEM_BYTES.items():
        if fnmatch.fnmatchcase(kernel.subject, pattern):
            return size
    return 0


def table(kernels):
    head = ("| file | kernel | regs | stack B | spill STL/LDL (B) | smem B | block "
            "| blocks/SM | warps/SM | occupancy | limit | " + " | ".join(INSTRUCTIONS_SHOWN) + " |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for k in kernels:
        dyn = dynamic_smem(k)
        smem = f"{k.static_smem}" + (f" + {dyn} dyn" if dyn else "")
        if k.max_threads:
            blocks, warps, limiter = occupancy(k.regs, k.static_smem + dyn, k.max_threads)
            block = str(k.max_threads)
            occ = f"{100 * warps // SM90['max_warps_per_sm']}%"
            blocks, warps = str(blocks), str(warps)
        else:
            block, blocks, limiter = "unknown", "?", "registers"
            warps = f"<= {registers_warp_limit(k.regs)}"
            occ = "unknown"
        spill = (f"{k.stores}/{k.loads} ({k.store_bytes}/{k.load_bytes})"
                 if k.stores or k.loads else "0")
        name = short_name(k.demangled or k.mangled).replace("|", "\\|")
        counts = " | ".join(str(k.opcodes[op]) for op in INSTRUCTIONS_SHOWN)
        rows.append(f"| {k.source} | `{name}` | {k.regs} | {k.stack} | {spill} | {smem} "
                    f"| {block} | {blocks} | {warps} | {occ} | {limiter} | {counts} |")
    return "\n".join(rows)


def render(kernels, failures, warnings, notes, inputs):
    lines = [
        f"# Kernel report: {ARCH} machine code of {', '.join(inputs)}",
        "",
        "Made by tools/kernel_report.sh (cuobjdump listings; see tools/kernel_report.py). "
        "Occupancy is theoretical, for an H100/H200 SM, with the block size of "
        "`__launch_bounds__` (its maximum threads; 'unknown' without launch bounds: then "
        "only the warps the registers allow) and static shared memory (smem B: the kernel's "
        "own, without the 1 KB per block the system reserves, which occupancy adds; plus "
        "the dynamic bytes of DYNAMIC_SMEM_BYTES where listed). spill STL/LDL: local-memory "
        "store/load instructions (and their bytes) in the SASS.",
        "",
        table(kernels),
        "",
        f"{len(kernels)} kernels; {len(failures)} failure(s), {len(warnings)} warning(s).",
    ]
    for title, items in (("Failures", failures), ("Warnings", warnings), ("Notes", notes)):
        if items:
            lines += ["", f"## {title}", ""] + [f"- {item}" for item in items]
    return "\n".join(lines) + "\n"


def object_files(paths, workdir):
    """(source name, object path) for each .o given and each member of each .a."""
    result = []
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")
        if p.suffix == ".a":
            dest = Path(workdir) / p.name
            dest.mkdir()
            members = subprocess.run(["ar", "t", str(p.resolve())], capture_output=True,
                                     text=True, check=True).stdout.split()
            subprocess.run(["ar", "x", str(p.resolve())], cwd=dest, check=True)
            result += [(m.removesuffix(".o"), dest / m) for m in members]
        else:
            result.append((p.name.removesuffix(".o"), p))
    return result


def dump(cuobjdump, obj, what):
    proc = subprocess.run([cuobjdump, "-arch", ARCH, what, str(obj)], capture_output=True,
                          text=True)
    if proc.returncode != 0 and "does not contain device code" not in proc.stderr:
        raise RuntimeError(f"{cuobjdump} {what} {obj} failed: {proc.stderr.strip()}")
    return proc.stdout


def collect(cuobjdump, paths):
    """All kernels of the inputs' sm_90 ELFs (the objects listed in parallel)."""
    with tempfile.TemporaryDirectory() as workdir:
        objects = object_files(paths, workdir)

        def one(item):
            source, obj = item
            resource = dump(cuobjdump, obj, "--dump-resource-usage")
            if not has_arch_elf(resource):
                return False, []
            sass = dump(cuobjdump, obj, "-sass")
            elf = dump(cuobjdump, obj, "-elf")
            return True, kernels_from_listings(source, resource, sass, elf)

        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            results = list(pool.map(one, objects))
    if not any(found for found, _ in results):
        raise RuntimeError(f"no {ARCH} machine code in {', '.join(map(str, paths))}: is "
                           f"{ARCH[3:]} in CMAKE_CUDA_ARCHITECTURES?")
    kernels = [k for _, ks in results for k in ks]
    names = demangle(k.mangled for k in kernels)
    for k in kernels:
        k.demangled = names[k.mangled]
    kernels.sort(key=lambda k: (k.source, short_name(k.demangled)))
    return kernels


def parse_rule(text):
    pattern, _, ops = text.rpartition("=")
    if not pattern or not ops:
        raise argparse.ArgumentTypeError(f"--rule wants PATTERN=OP[,OP...], got '{text}'")
    return InstructionRule(pattern, tuple(ops.split(",")), "added with --rule")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", help=".a archives or .o objects")
    parser.add_argument("--cuobjdump", required=True)
    parser.add_argument("--output", help="write the Markdown report here too")
    parser.add_argument("--rule", action="append", type=parse_rule, default=[],
                        help="PATTERN=OP[,OP] placed before INSTRUCTION_RULES (to prove "
                        "a check fails, or to try a rule)")
    parser.add_argument("--hot", action="append", default=[],
                        help="another hot pattern, added to HOT_PATTERNS")
    args = parser.parse_args(argv)
    try:
        kernels = collect(args.cuobjdump, args.inputs)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"kernel_report: error: {e}", file=sys.stderr)
        return 2
    failures, warnings, notes = check(kernels, tuple(args.rule) + INSTRUCTION_RULES,
                                      HOT_PATTERNS + tuple(args.hot))
    report = render(kernels, failures, warnings, notes, [Path(p).name for p in args.inputs])
    print(report)
    if args.output:
        Path(args.output).write_text(report)
        print(f"kernel_report: wrote {args.output}")
    kinds = sorted({f.split(":", 1)[0] for f in failures})
    if failures:
        print(f"kernel_report: FAILED: {len(failures)} failure(s) [{', '.join(kinds)}]")
        return 1
    print(f"kernel_report: passed: {len(kernels)} kernels, {len(warnings)} warning(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
