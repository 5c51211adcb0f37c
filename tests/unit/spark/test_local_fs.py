"""NioLocalFileSystem (jars/src): file:// in local mode, with Hadoop's permissions set through java.nio."""

from __future__ import annotations

import os
import stat

from nexgen_etl.spark.local.jvm import LOCAL_FS_CLASS


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)  # permission bits with sticky, setuid and setgid


def test_file_paths_use_it_with_hadoops_permissions_and_checksums(spark, tmp_path):
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path
    fs = path(tmp_path.as_uri()).getFileSystem(conf)
    assert fs.getClass().getName() == LOCAL_FS_CLASS  # the session was configured by submit_spec
    out = fs.create(path(f"file://{tmp_path}/a/b/part.txt"), True)
    out.write(bytearray(b"x"))
    out.close()
    # Hadoop's defaults with its 022 umask: files 644, directories 755; the checksum file is still written
    assert mode(tmp_path / "a" / "b" / "part.txt") == 0o644
    assert mode(tmp_path / "a") == 0o755 and mode(tmp_path / "a" / "b") == 0o755
    assert (tmp_path / "a" / "b" / ".part.txt.crc").exists()
    perm = jvm.org.apache.hadoop.fs.permission.FsPermission
    fs.setPermission(path(f"file://{tmp_path}/a/b/part.txt"), perm("600"))
    assert mode(tmp_path / "a" / "b" / "part.txt") == 0o600
    # the sticky bit is beyond java.nio: Hadoop's own chmod sets it
    fs.setPermission(path(f"file://{tmp_path}/a"), perm("1777"))
    assert mode(tmp_path / "a") == 0o1777
    assert fs.getFileStatus(path(f"file://{tmp_path}/a/b/part.txt")).getPermission().toString() == "rw-------"
