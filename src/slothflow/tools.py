"""redun's ``redun.tools`` import path: small tasks that copy files and folders as workflow steps.

Each copy is a cached call like any other: it reruns when the source changed or the copy it made was
deleted or edited.
"""

from __future__ import annotations

from slothflow.files._file import Dir, File
from slothflow.model._task import task

slothflow_namespace = "slothflow.tools"


@task(version="1")
def copy_file(src_file: File, dest_path: str, skip_if_exists: bool = False) -> File:
    """Copy ``src_file`` to ``dest_path`` (any file system to any other); gives the new File."""
    return src_file.copy_to(File(dest_path), skip_if_exists=skip_if_exists)


@task(version="1")
def copy_files(src_files: list[File], dest_paths: list[str], skip_if_exists: bool = False) -> list[File]:
    """Copy each of ``src_files`` to the matching path of ``dest_paths``."""
    if len(src_files) != len(dest_paths):
        raise ValueError(f"copy_files: {len(src_files)} files but {len(dest_paths)} destination paths")
    return [src.copy_to(File(dest), skip_if_exists=skip_if_exists) for src, dest in zip(src_files, dest_paths)]


@task(version="1")
def copy_dir(src_dir: Dir, dest_path: str, skip_if_exists: bool = False) -> Dir:
    """Copy every file of ``src_dir`` under ``dest_path``, keeping relative paths; gives the new Dir."""
    return src_dir.copy_to(Dir(dest_path), skip_if_exists=skip_if_exists)


__all__ = ["copy_dir", "copy_file", "copy_files"]
