"""`versions.cpu_description` (recorded by `aligneval env` and the timed benchmarks) read from a
cpuinfo file written by hand: the first processor's model, family and model number, and which of the
vector extensions that set this work's speed it has."""

from __future__ import annotations

from aligneval.versions import VECTOR_FLAGS, cpu_description, cpu_line

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 sha_ni
"""


def test_cpu_description_reads_the_first_processor(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert cpu_description(str(path)) == {"model": "AMD EPYC 9R14 96-Core Processor", "family": "25",
                                          "model_number": "17", "vector": ["avx2", "avx512f", "avx512_bf16"]}
    path.write_text(CPUINFO.replace(" avx512f avx512bw avx512_bf16", ""))
    assert cpu_description(str(path))["vector"] == ["avx2"]
    path.write_text(CPUINFO.replace(" sha_ni", " amx_tile sha_ni"))
    assert cpu_description(str(path))["vector"] == ["avx2", "avx512f", "avx512_bf16", "amx_tile"] == list(VECTOR_FLAGS)
    assert cpu_line(cpu_description(str(path))) == ("AMD EPYC 9R14 96-Core Processor (family 25, model 17; "
                                                    "avx2, avx512f, avx512_bf16, amx_tile)")


def test_no_cpuinfo_gives_nones(tmp_path):
    missing = cpu_description(str(tmp_path / "missing"))
    assert missing == {"model": None, "family": None, "model_number": None, "vector": None}
    assert cpu_line(missing) == "unknown"
