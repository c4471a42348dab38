"""CPU path dispatch: GPTX_FORCE_ISA, set_cpu_isa, cpuid agreement, no AVX outside the AVX kernels (objdump)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

import gptx
from gptx import _core

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ALL_ISAS = ("generic", "avx2", "avx512", "avx512_bf16", "reference")


def _env(force_isa):
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(gptx.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, TESTS_DIR, env.get("PYTHONPATH", "")])
    env.pop("GPTX_FORCE_ISA", None)
    if force_isa is not None:
        env["GPTX_FORCE_ISA"] = force_isa
    env["OMP_NUM_THREADS"] = "2"
    return env


def _run(code, force_isa, *args):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=_env(force_isa))


def _cpu_flags():
    """The flags line of /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _cpu_can(isa):
    flags = _cpu_flags()
    if flags is None:
        return isa in _core.available_cpu_isas()
    if isa == "avx2":
        return {"avx2", "fma"} <= flags
    if isa == "avx512":
        return {"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags
    if isa == "avx512_bf16":
        return _cpu_can("avx512") and {"avx512_vnni", "avx512_bf16"} <= flags
    return True


_CHECK = """
import sys
import numpy as np
import gptx
print(gptx.info()["cpu_isa"], flush=True)
from gptx import ops
import reference as ref
from tolerances import assert_close
rng = np.random.default_rng(int(sys.argv[1]))
f = lambda *s: rng.standard_normal(s).astype(np.float32)
a, b, bias = f(17, 45), f(45, 33), f(33)
out = np.full((17, 33), np.nan, np.float32)
ops.matmul_forward(a, b, bias, out=out)
assert_close(out, ref.matmul(a, b, bias), scale=np.sqrt(45), what="matmul_forward")
x = f(3, 5, 131)
sm = np.full(x.shape, np.nan, np.float32)
ops.softmax_forward(x, scale=0.8, causal=False, out=sm)
assert_close(sm, ref.softmax(x, 0.8), what="softmax_forward")
q, k, v = f(2, 7, 3, 16), f(2, 11, 3, 16), f(2, 11, 3, 16)
o = np.full((2, 7, 3, 16), np.nan, np.float32)
lse = np.full((2, 3, 7), np.nan, np.float32)
ops.attention_forward(q, k, v, causal=True, out=o, lse=lse)
ro, rlse, _ = ref.attention(q, k, v, causal=True)
assert_close(o, ro, scale=4.0, what="attention_forward out")
assert_close(lse, rlse, scale=4.0, what="attention_forward lse")
print("CHECKS OK", flush=True)
"""


def test_available_isas_match_cpuid():
    avail = _core.available_cpu_isas()
    assert "generic" in avail and "reference" in avail
    if _cpu_flags() is None:
        pytest.skip("no /proc/cpuinfo to compare with")
    for isa in ("avx2", "avx512", "avx512_bf16"):
        assert (isa in avail) == _cpu_can(isa), f"available_cpu_isas() {avail} disagrees with /proc/cpuinfo on {isa}"


@pytest.mark.parametrize("name", ALL_ISAS)
def test_force_isa_subprocess(name, rng):
    isa = name
    seed = int(rng.integers(0, 2**31))
    r = _run(_CHECK, isa, seed)
    out = r.stdout + r.stderr
    if not _cpu_can(isa):
        # must fail the import cleanly with a message, not die of SIGILL
        assert r.returncode > 0, f"GPTX_FORCE_ISA={isa} on a CPU without it: rc={r.returncode}\n{out[-2000:]}"
        assert "GPTX_FORCE_ISA" in r.stderr and isa in r.stderr and "ImportError" in r.stderr, out[-2000:]
        assert "CHECKS OK" not in r.stdout
        return
    assert r.returncode == 0, f"GPTX_FORCE_ISA={isa} (seed {seed}): rc={r.returncode}\n{out[-3000:]}"
    lines = r.stdout.splitlines()
    assert lines[0] == isa, f"GPTX_FORCE_ISA={isa} but gptx.info()['cpu_isa'] is {lines[0]!r}"
    assert lines[-1] == "CHECKS OK"


def test_force_isa_print_command():
    """The exact one-liner: `python -c "import gptx; print(gptx.info()['cpu_isa'])"`."""
    code = "import gptx; print(gptx.info()['cpu_isa'])"
    for isa in ("generic", "reference"):
        r = _run(code, isa)
        assert r.returncode == 0 and r.stdout.strip() == isa, r.stdout + r.stderr


@pytest.mark.parametrize("value", [None, ""])
def test_default_isa_is_best(value):
    r = _run("import gptx; print(gptx.info()['cpu_isa'])", value)
    assert r.returncode == 0, r.stderr
    best = ("avx512_bf16" if _cpu_can("avx512_bf16") else "avx512" if _cpu_can("avx512") else
            "avx2" if _cpu_can("avx2") else "generic")
    assert r.stdout.strip() == best


@pytest.mark.parametrize("value", ["bogus", "AVX3", "avx2 ", "sse"])
def test_invalid_force_isa_fails_import(value):
    r = _run("import gptx", value)
    assert r.returncode > 0, f"GPTX_FORCE_ISA={value!r}: rc={r.returncode}"
    assert "ImportError" in r.stderr and "GPTX_FORCE_ISA" in r.stderr and value.strip() in r.stderr, r.stderr[-2000:]


def test_set_cpu_isa():
    before = _core.cpu_isa()
    try:
        for isa in _core.available_cpu_isas():
            _core.set_cpu_isa(isa)
            assert _core.cpu_isa() == isa and gptx.info()["cpu_isa"] == isa
        with pytest.raises(ValueError) as info:
            _core.set_cpu_isa("bogus")
        assert "set_cpu_isa" in str(info.value) and "bogus" in str(info.value)
        for isa in ("avx2", "avx512", "avx512_bf16"):
            if isa not in _core.available_cpu_isas():
                with pytest.raises(ValueError, match="set_cpu_isa"):
                    _core.set_cpu_isa(isa)
        with pytest.raises(TypeError):
            _core.set_cpu_isa(None)
    finally:
        _core.set_cpu_isa(before)
    assert _core.cpu_isa() == before


# ------------------------------------------------------------------------------------------------ disassembly
def _loaded_library():
    """Path of the shared library holding the kernels, as mapped into this process."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        pytest.skip("no /proc/self/maps")
    libs = sorted(p for p in paths if os.path.basename(p).startswith("libgptx.so"))
    if libs:
        return libs[0]
    core = sorted(p for p in paths if os.path.basename(p).startswith("_core") and p.endswith(".so"))
    assert core, "gptx._core is not mapped into this process"
    return core[0]  # a static build links the kernels into the extension itself


_FUNC = re.compile(r"^[0-9a-f]+ <(.*)>:$")
_INSN = re.compile(r"^\s*[0-9a-f]+:\s+(\S+)(.*)$")
_LEGACY_V = {"verr", "verw", "vmcall", "vmlaunch", "vmresume", "vmxoff", "vmxon", "vmread", "vmwrite", "vmptrld",
             "vmptrst", "vmclear", "vmfunc", "vmrun", "vmload", "vmsave", "vmmcall"}
_WIDE = re.compile(r"%(?:[yz]mm\d+|k[0-7]\b)")


@pytest.fixture(scope="module")
def disassembly():
    """{function name: (instruction count, AVX evidence lines)} from objdump of the loaded library."""
    if shutil.which("objdump") is None:
        pytest.skip("objdump is not installed")
    lib = _loaded_library()
    # A stripped library has no symbols for its static (anonymous-namespace, OpenMP-outlined) functions: objdump
    # would then credit their code to the preceding exported symbol and every verdict below would be wrong.
    symtab = subprocess.run(["objdump", "-t", lib], capture_output=True, text=True, timeout=60)
    if "no symbols" in symtab.stdout or "gptx::cpu::" not in subprocess.run(
            ["c++filt"], input=symtab.stdout, capture_output=True, text=True, timeout=60).stdout:
        pytest.skip(f"{lib} is stripped: its local symbols are gone, so functions cannot be told apart")
    r = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", lib], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    funcs = {}
    cur = None
    for line in r.stdout.splitlines():
        m = _FUNC.match(line)
        if m:
            cur = m.group(1)
            funcs.setdefault(cur, [0, []])
            continue
        m = _INSN.match(line)
        if not m or cur is None:
            continue
        funcs[cur][0] += 1
        mnemonic, operands = m.group(1), m.group(2)
        # VEX/EVEX encoded (AVX) instructions all start with 'v' (the few legacy v* ones are system instructions)
        vex = mnemonic.startswith("v") and mnemonic not in _LEGACY_V
        if vex or _WIDE.search(operands):
            funcs[cur][1].append(line.strip())
    return lib, funcs


def _in_isa_namespace(name, isa):
    return f"gptx::cpu::{isa}::" in name


def test_generic_kernels_have_no_avx(disassembly):
    lib, funcs = disassembly
    generic = {n: f for n, f in funcs.items() if _in_isa_namespace(n, "generic")}
    if not generic:
        pytest.skip(f"{lib} has no symbols for gptx::cpu::generic (stripped?)")
    assert any("gemm" in n for n in generic), sorted(generic)[:10]
    bad = {n: f[1][:3] for n, f in generic.items() if f[1]}
    assert not bad, f"generic kernels in {lib} use AVX instructions: {bad}"


def test_non_isa_code_has_no_avx(disassembly):
    """Everything outside the avx2/avx512/avx512_bf16 namespaces (Tensor, op dispatchers, dispatch itself, inline functions and
    templates that an ISA object file could have emitted) must run on a baseline x86-64 CPU."""
    lib, funcs = disassembly
    for needed in ("gptx::Tensor::", "gptx::matmul_forward(", "gptx::set_cpu_isa("):
        if not any(needed in n for n in funcs):
            pytest.skip(f"{lib} has no symbol for {needed} (stripped?)")
    bad = {n: f[1][:3] for n, f in funcs.items()
           if f[1] and not any(_in_isa_namespace(n, isa) for isa in ("avx2", "avx512", "avx512_bf16"))}
    some = dict(list(bad.items())[:8])
    assert not bad, f"{len(bad)} functions outside the AVX namespaces use AVX instructions: {some}"


def test_avx2_kernels_use_ymm_not_zmm(disassembly):
    """Sanity of the parsing (the avx2 kernels do use ymm), and avx2 code stays off AVX-512 (zmm, mask registers)."""
    lib, funcs = disassembly
    avx2 = {n: f for n, f in funcs.items() if _in_isa_namespace(n, "avx2")}
    if not avx2:
        pytest.skip(f"{lib} has no symbols for gptx::cpu::avx2 (stripped?)")
    assert any(any("%ymm" in line for line in f[1]) for f in avx2.values()), "no ymm use found in the avx2 kernels"
    gemm = [f for n, f in avx2.items() if "gptx::cpu::avx2::" in n and "gemm" in n]
    assert any(any("%ymm" in line for line in f[1]) for f in gemm), "the avx2 gemm uses no ymm registers"
    bad = {n: [l for l in f[1] if re.search(r"%(?:zmm\d+|k[0-7]\b)", l)][:3] for n, f in avx2.items()}
    bad = {n: v for n, v in bad.items() if v}
    assert not bad, f"avx2 kernels use AVX-512 registers: {bad}"
