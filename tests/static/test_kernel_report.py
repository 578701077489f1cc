"""Self-test of tools/kernel_report.py on hand-made cuobjdump listings.

Needs no cuobjdump and no GPU: the listings below follow the format of CUDA 13's
cuobjdump (--dump-resource-usage, -sass, -elf), and a stand-in cuobjdump script serves
them to the real command line. Checks the parsers, the occupancy arithmetic (cases
worked by hand from the H100 limits), and that each check FAILS when it should and
only then. Standard library only; ctest static.kernel_report_selftest.
"""

import contextlib
import fnmatch
import io
import stat
import sys
import tempfile
import textwrap
import unittest
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tools"))
import kernel_report as kr  # noqa: E402

# Itanium names of two fake kernels (c++filt demangles them in the end-to-end test).
BF16 = "_ZN4ddpm7kernels17conv2d_bf16_fpropEPKfPf"  # ddpm::kernels::conv2d_bf16_fprop(...)
PLAIN = "_ZN4ddpm7kernels10add_kernelEPKfPf"  # ddpm::kernels::add_kernel(...)

RESOURCE = textwrap.dedent(f"""\

    Fatbin elf code:
    ================
    arch = sm_90
    code version = [1,8]
    host = linux
    compile_size = 64bit
    identifier = /x/kernels/conv2d_bf16.cu

    Resource usage:
     Common:
      GLOBAL:0
     Function {BF16}:
      REG:149 STACK:16 SHARED:17408 LOCAL:0 CONSTANT[0]:728 TEXTURE:0 SURFACE:0 SAMPLER:0
     Function {PLAIN}:
      REG:32 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:560 TEXTURE:0 SURFACE:0 SAMPLER:0
    """)

SASS = textwrap.dedent(f"""\

    Fatbin elf code:
    ================
    arch = sm_90

    \tcode for sm_90
    \t\tFunction : {BF16}
    \t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
            /*0000*/                   LDC R1, c[0x0][0x28] ;                 /* 0x00000a00ff017b82 */
                                                                              /* 0x000fe20000000800 */
            /*04e0*/                   LDGSTS.E.BYPASS.128 [R11], desc[UR14][R6.64], P0 ;
            /*0500*/              @!P0 LDSM.16.M88.4 R4, [R2] ;
            /*0510*/                   HMMA.16816.F32.BF16 R52, R88, R94, R52 ;
            /*0520*/                   HMMA.16816.F32.BF16 R56, R88, R92, R56 ;
            /*1e30*/                   STL.64 [R1], R4 ;
            /*1e40*/               @P1 STL.128 [R1+0x10], R8 ;
            /*2760*/                   LDL.LU R76, [R1] ;
            /*2770*/                   LDL.U8 R77, [R1+0x4] ;
            /*2780*/                   EXIT ;
            /*2790*/                   BRA 0x2790;
    \t\t..........



    \t\tFunction : {PLAIN}
    \t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
            /*0000*/                   LDC R1, c[0x0][0x28] ;
            /*0010*/                   FADD R0, R2, R3 ;
            /*0020*/                   EXIT ;
    """)

ELF = textwrap.dedent(f"""\
    .nv.info.{BF16}
    \t<0x1>
    \tAttribute:\tEIATTR_MAXREG_COUNT
    \tFormat:\tEIFMT_HVAL
    \tValue:\t0xff
    \t<0x2>
    \tAttribute:\tEIATTR_MAX_THREADS
    \tFormat:\tEIFMT_SVAL
    \tValue:\t0x80 0x1 0x1 \n
    .nv.info.{PLAIN}
    \t<0x1>
    \tAttribute:\tEIATTR_CUDA_API_VERSION
    \tFormat:\tEIFMT_SVAL
    \tValue:\t0x82 \n
    .text.{PLAIN}
    \t0x00000a00 0xff017b82 0x000fe200 0x00000800
    """)


def kernel(source, name="k", regs=32, threads=128, stl=0, ldl=0, local=0, **ops):
    counts = Counter(ops)
    counts.update(STL=stl, LDL=ldl)
    return kr.Kernel(source=source, mangled=name, demangled=f"void ddpm::kernels::{name}()",
                     regs=regs, local=local, max_threads=threads, opcodes=counts)


TENSOR_CORE_CONV = kernel("conv2d_tensor_core.cu", "conv_implicit_gemm_kernel", HMMA=8)


class Parsers(unittest.TestCase):
    def test_resource_usage(self):
        got = kr.parse_resource_usage(RESOURCE)
        self.assertEqual(got[BF16], {"REG": 149, "STACK": 16, "SHARED": 17408, "LOCAL": 0})
        self.assertEqual(got[PLAIN]["REG"], 32)
        self.assertTrue(kr.has_arch_elf(RESOURCE))
        self.assertFalse(kr.has_arch_elf(RESOURCE.replace("sm_90", "sm_80")))

    def test_sass_counts_opcodes_and_local_bytes(self):
        ops, stored, loaded = kr.parse_sass(SASS)[BF16]
        self.assertEqual((ops["HMMA"], ops["LDSM"], ops["LDGSTS"]), (2, 1, 1))
        self.assertEqual((ops["STL"], ops["LDL"]), (2, 2))
        self.assertEqual(stored, 8 + 16)  # STL.64 + STL.128
        self.assertEqual(loaded, 4 + 1)  # LDL.LU (32-bit) + LDL.U8
        self.assertEqual(ops["LDC"], 1)  # the encoding-only lines are not instructions
        plain, _, _ = kr.parse_sass(SASS)[PLAIN]
        self.assertEqual(sum(plain.values()), 3)

    def test_elf_launch_bounds(self):
        got = kr.parse_elf_info(ELF)
        self.assertEqual(got, {BF16: 128})  # PLAIN has no __launch_bounds__
        reqntid = ELF.replace("EIATTR_MAXREG_COUNT", "EIATTR_REQNTID").replace(
            "Value:\t0xff", "Value:\t0x40 0x2 0x1")
        self.assertEqual(kr.parse_elf_info(reqntid)[BF16], 128)  # 64 x 2 x 1 wins

    def test_static_shared_memory_excludes_the_reservation(self):
        # cuobjdump SHARED -> ptxas -v "bytes smem", as measured with nvcc 13.0 for sm_90
        for listed, own in ((0, 0), (1024, 0), (1536, 512), (50176, 49152)):
            self.assertEqual(kr.Kernel("x.cu", "k", shared=listed).static_smem, own)

    def test_short_name(self):
        self.assertEqual(kr.short_name("void ddpm::kernels::(anonymous namespace)::f<A<1>, "
                                       "(int)2>(float const*, int)"), "f<A<1>, (int)2>")


class Occupancy(unittest.TestCase):
    # (regs, static smem, threads) -> (blocks, warps, limiter), each worked by hand:
    CASES = [
        # 149 x 32 = 4768 -> 4864 per warp; 16384 // 4864 = 3 warps per sub-partition,
        # 12 per SM = 3 blocks of 4 warps; smem (17408 + 1024) allows 233472 // 18432 = 12.
        ((149, 17408, 128), (3, 12, "registers")),
        # 32 regs: 1024 per warp, 16 per sub-partition = 64 warps: 2 blocks of 32 warps.
        ((32, 0, 1024), (2, 64, "warps, registers")),
        # 255 regs -> 8192 per warp, 2 per sub-partition = 8 warps = 1 block of 8.
        ((255, 0, 256), (1, 8, "registers")),
        # 48 KB static + 1 KB reserved: 233472 // 50176 = 4 blocks of 2 warps.
        ((20, 48 * 1024, 64), (4, 8, "shared memory")),
        # one warp per block: the 32-block limit.
        ((16, 0, 32), (32, 32, "blocks")),
        # 100 regs -> 3328 per warp: 4 per sub-partition = 16 warps; 6 warps a block: 2.
        ((100, 0, 192), (2, 12, "registers")),
        # 128 regs x 1024 threads = 131072 > 65536 per block: cannot launch.
        ((128, 0, 1024), (0, 0, "registers")),
    ]

    def test_cases(self):
        for args, want in self.CASES:
            with self.subTest(args=args):
                self.assertEqual(kr.occupancy(*args), want)

    def test_registers_only(self):
        self.assertEqual(kr.registers_warp_limit(149), 12)
        self.assertEqual(kr.registers_warp_limit(32), 64)


class Checks(unittest.TestCase):
    def run_check(self, *kernels, **kwargs):
        return kr.check([TENSOR_CORE_CONV, *kernels], **kwargs)

    def test_clean_library_passes(self):
        ok = kernel("conv2d_bf16.cu", "conv2d_bf16_kernel", HMMA=4, LDSM=2, LDGSTS=2)
        failures, warnings, _ = self.run_check(ok, kernel("reduce.cu"))
        self.assertEqual((failures, warnings), ([], []))

    def test_hot_spill_fails_cold_spill_warns(self):
        failures, _, _ = self.run_check(kernel("group_norm.cu", "gn", stl=1, ldl=1))
        self.assertEqual(len(failures), 1)
        self.assertTrue(failures[0].startswith("hot-spill: group_norm.cu: gn spills"))
        failures, _, _ = self.run_check(kernel("elementwise.cu", "silu", local=16))
        self.assertEqual(len(failures), 1)  # LOCAL bytes without STL/LDL count too
        failures, warnings, _ = self.run_check(kernel("training_batch.cu", "tb", stl=3))
        self.assertEqual(failures, [])
        self.assertIn("spill outside the hot families", warnings[0])

    def test_tensor_core_conv_needs_hmma_only(self):
        no_hmma = kernel("conv2d_tensor_core.cu", "conv_implicit_gemm_kernel")
        failures, _, _ = kr.check([no_hmma])
        self.assertEqual(len(failures), 1)
        self.assertIn("has no HMMA", failures[0])

    def test_bf16_families_need_all_three(self):
        for source, name in (("conv2d_bf16.cu", "k"), ("gemm_bf16.cu", "k"),
                             ("attention.cu", "attention_bf16_forward")):
            with self.subTest(source=source):
                lacking = kernel(source, name, HMMA=4, LDGSTS=2)  # no ldmatrix
                failures, _, _ = self.run_check(lacking)
                self.assertEqual(len(failures), 1)
                self.assertRegex(failures[0], r"^missing-instruction: .* has no LDSM in")

    def test_first_rule_wins_so_exemptions_go_first(self):
        cast = kernel("gemm_bf16.cu", "cast_to_bf16_kernel")
        failures, _, _ = self.run_check(cast)
        self.assertEqual(len(failures), 1)
        exempt = kr.InstructionRule("gemm_bf16.cu:*cast_to_bf16*", (), "elementwise cast")
        failures, _, _ = self.run_check(cast, rules=(exempt,) + kr.INSTRUCTION_RULES)
        self.assertEqual(failures, [])

    def test_must_match_rule_fails_when_nothing_matches(self):
        failures, _, _ = kr.check([kernel("reduce.cu")])
        self.assertEqual(len(failures), 1)
        self.assertTrue(failures[0].startswith("rule-unmatched: no kernel matches rule "
                                               "'conv2d_tensor_core.cu:*'"))

    def test_known_spill_is_pinned(self):
        known = (kr.KnownSpill("gemm.cu:*gemm_simt*", 1, 1, "test"),)
        at = kernel("gemm.cu", "gemm_simt_kernel", stl=1, ldl=1)
        failures, warnings, notes = self.run_check(at, known=known)
        self.assertEqual(failures, [])
        self.assertIn("known spill", warnings[0])
        grown = kernel("gemm.cu", "gemm_simt_kernel", stl=2, ldl=1)
        failures, _, _ = self.run_check(grown, known=known)
        self.assertEqual(len(failures), 1)
        self.assertIn("more than its KNOWN_SPILLS entry allows", failures[0])
        shrunk = kernel("gemm.cu", "gemm_simt_kernel", stl=0, ldl=0)
        _, _, notes = self.run_check(shrunk, known=known)
        self.assertTrue(any("matches no spilling kernel: remove it" in n for n in notes))

    def test_tables_are_consistent(self):
        # Every known-spill entry names a hot file (else it would only ever warn).
        for e in kr.KNOWN_SPILLS:
            subject = e.pattern.split(":", 1)[0] + ":x"
            self.assertTrue(any(fnmatch.fnmatchcase(subject, p) for p in kr.HOT_PATTERNS),
                            e.pattern)
        self.assertEqual(len({r.pattern for r in kr.INSTRUCTION_RULES}),
                         len(kr.INSTRUCTION_RULES))


TC = "_ZN4ddpm7kernels25conv_implicit_gemm_kernelEv"  # the tensor-core conv stand-in
TC_OBJECT = (
    f"Fatbin elf code:\n================\narch = sm_90\n\nResource usage:\n"
    f" Function {TC}:\n  REG:168 STACK:0 SHARED:33792 LOCAL:0 CONSTANT[0]:728\n",
    f"\t\tFunction : {TC}\n"
    "        /*0510*/                   HMMA.16816.F32.BF16 R52, R88, R94, R52 ;\n",
    f".nv.info.{TC}\n\tAttribute:\tEIATTR_MAX_THREADS\n\tFormat:\tEIFMT_SVAL\n"
    f"\tValue:\t0x100 0x1 0x1 \n",
)


class CommandLine(unittest.TestCase):
    """The real main(), with a stand-in cuobjdump serving hand-made listings."""

    def run_main(self, objects, *extra):
        """objects: {object file name: (resource, sass, elf listings)}."""
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for obj, listings in objects.items():
                (tmp / obj).write_bytes(b"")
                for kind, text in zip(("resource", "sass", "elf"), listings):
                    (tmp / f"{obj}.{kind}").write_text(text)
            fake = tmp / "cuobjdump"
            fake.write_text(textwrap.dedent(f"""\
                #!{sys.executable}
                import sys
                assert sys.argv[1:3] == ["-arch", "sm_90"], sys.argv
                kind = {{"--dump-resource-usage": "resource", "-sass": "sass",
                         "-elf": "elf"}}[sys.argv[3]]
                sys.stdout.write(open(sys.argv[4] + "." + kind).read())
                """))
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = kr.main(["--cuobjdump", str(fake), "--output", str(tmp / "r.md"),
                                  *(str(tmp / obj) for obj in objects), *extra])
            report = (tmp / "r.md").read_text() if (tmp / "r.md").exists() else ""
        return status, out.getvalue(), report

    def test_spilling_hot_kernel_fails(self):
        # attention.cu is hot and its kernel spills; no conv2d_tensor_core.cu kernel
        # is present, which the must_match rule catches: two failures.
        status, out, report = self.run_main({"attention.cu.o": (RESOURCE, SASS, ELF)})
        self.assertEqual(status, 1)
        self.assertIn("kernel_report: FAILED: 2 failure(s) [hot-spill, rule-unmatched]", out)
        self.assertIn("| attention.cu | `conv2d_bf16_fprop` | 149 | 16 | 2/2 (24/5) | 16384 "
                      "| 128 | 3 | 12 | 18% | registers | 2 | 1 | 1 |", report)
        self.assertIn("| `add_kernel` | 32 | 0 | 0 | 0 | unknown | ? | <= 64 | unknown", report)

    def test_clean_objects_pass(self):
        clean = "\n".join(line for line in SASS.splitlines()
                          if "STL" not in line and "LDL" not in line)
        objects = {"attention.cu.o": (RESOURCE, clean, ELF),
                   "conv2d_tensor_core.cu.o": TC_OBJECT}
        status, out, report = self.run_main(objects)
        self.assertEqual(status, 0, out)
        self.assertIn("kernel_report: passed: 3 kernels, 0 warning(s)", out)
        # 168 regs -> 5376 per warp, 3 per sub-partition = 12 warps: 1 block of 8 warps.
        self.assertIn("| conv2d_tensor_core.cu | `conv_implicit_gemm_kernel` | 168 | 0 | 0 "
                      "| 32768 | 256 | 1 | 8 | 12% | registers | 1 | 0 | 0 |", report)
        # and an extra rule (here: a fake one) makes the same objects fail
        status, out, _ = self.run_main(objects, "--rule", "*add_kernel*=HMMA")
        self.assertEqual(status, 1)
        self.assertIn("add_kernel has no HMMA in its SASS (rule '*add_kernel*'", out)

    def test_no_sm90_code_is_an_error(self):
        err = io.StringIO()
        no_elf = RESOURCE.replace("sm_90", "sm_80")
        with contextlib.redirect_stderr(err):
            status, _, _ = self.run_main({"x.cu.o": (no_elf, "", "")})
        self.assertEqual(status, 2)
        self.assertIn("no sm_90 machine code", err.getvalue())

    def test_missing_cuobjdump_is_an_error(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = kr.main(["--cuobjdump", "/nonexistent/cuobjdump", __file__])
        self.assertEqual(status, 2)
        self.assertIn("kernel_report: error:", err.getvalue())


if __name__ == "__main__":
    unittest.main()
