"""redun's ``redun.file`` import path: the file value types, re-exported from :mod:`slothflow.files`.

``from slothflow.file import File`` gives the same class as ``from slothflow import File``.
"""

from slothflow.files._file import ContentDir, ContentFile, Dir, File, FileSet, StagingDir, StagingFile

__all__ = ["ContentDir", "ContentFile", "Dir", "File", "FileSet", "StagingDir", "StagingFile"]
