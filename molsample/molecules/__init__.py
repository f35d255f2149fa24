"""The molecule room: what a set of atoms is made of and how it sits. Topologies and bond graphs
(``topology``, ``bonds``), Z-matrices for internal coordinates (``zmatrix``), chirality and the
mirror-image energy check (``chirality``, ``mirror_energy``), and conformational basins such as
alanine dipeptide's Ramachandran regions (``basins``)."""
