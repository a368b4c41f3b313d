"""File, Dir and their staging variants on fsspec, and shell-script tasks that consume and produce them."""
