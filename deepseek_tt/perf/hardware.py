"""Tenstorrent system figures used by the roofline (figures and their sources: docs/HARDWARE.md)."""

from __future__ import annotations

from dataclasses import dataclass

#: Bytes per stored value of each ttnn dtype (block-float tiles include their shared exponents).
BYTES_PER_VALUE: dict[str, float] = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "bfloat8_b": 1088 / 1024,
    "bfloat4_b": 576 / 1024,
}

#: TFLOPS of one Tensix core by math fidelity (a 32x32x32 tile matmul takes 16/32/48/64 cycles at 1 GHz).
CORE_TFLOPS: dict[str, float] = {"LoFi": 4.096, "HiFi2": 2.048, "HiFi3": 1.365, "HiFi4": 1.024}

#: DRAM of one chip, by ``ttnn.Arch`` name (a mesh device's ``arch()``): Wormhole's 12 GB of GDDR6 (binary sizes).
DRAM_BYTES_PER_CHIP: dict[str, int] = {"WORMHOLE_B0": 12 * 2**30}

#: The usual pairing of weight dtype and math fidelity on Wormhole.
FIDELITY_FOR_DTYPE: dict[str, str] = {"bfloat4_b": "LoFi", "bfloat8_b": "HiFi2", "bfloat16": "HiFi4", "float32": "HiFi4"}


@dataclass(frozen=True)
class System:
    """A Tenstorrent system seen as one mesh of identical chips."""

    name: str
    mesh: tuple[int, int]
    cores_per_chip: int
    dram_gb_s_per_chip: float  # nominal DRAM bandwidth of one chip (about 93% is achieved; see docs/HARDWARE.md)
    eth_gb_s_per_link: float = 12.5  # one direction of one 100 GbE link
    links_per_neighbour: int = 4  # Ethernet links between two mesh neighbours used by collectives

    @property
    def num_chips(self) -> int:
        return self.mesh[0] * self.mesh[1]

    @property
    def dram_bytes_per_s(self) -> float:
        return self.num_chips * self.dram_gb_s_per_chip * 1e9


#: Wormhole systems. Galaxy chips expose 80 Tensix cores; 9.2 TB/s aggregate over 32 chips = 288 GB/s each.
SYSTEMS: dict[str, System] = {
    "N150": System("N150", (1, 1), cores_per_chip=72, dram_gb_s_per_chip=288.0, links_per_neighbour=0),
    "T3K": System("T3K", (1, 8), cores_per_chip=72, dram_gb_s_per_chip=288.0, links_per_neighbour=2),
    "TG": System("TG (1 Galaxy)", (4, 8), cores_per_chip=80, dram_gb_s_per_chip=288.0),
    "DUAL": System("DUAL (2 Galaxies)", (8, 8), cores_per_chip=80, dram_gb_s_per_chip=288.0),
    "QUAD": System("QUAD (4 Galaxies)", (16, 8), cores_per_chip=80, dram_gb_s_per_chip=288.0),
}
