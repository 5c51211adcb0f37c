package io.nexgen.fs;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;

import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system (file://, with its checksum files), setting permissions through java.nio.
 *
 * <p>Without Hadoop's native library (PySpark ships none) RawLocalFileSystem runs the chmod program for every
 * file and directory it creates: about 2.5 ms of process start each time, some ten per Parquet file written
 * (the temporary and final directories, the file, its checksum). Used for file:// paths in local mode only
 * (nexgen_etl.spark_submit); S3A and HDFS never call it.
 */
public class NioLocalFileSystem extends LocalFileSystem {
  public NioLocalFileSystem() {
    super(new Raw());
  }

  /** The raw (checksum-less) layer underneath, where the permissions are set. */
  public static class Raw extends RawLocalFileSystem {
    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
      short mode = permission.toShort();
      if ((mode & ~0777) != 0) { // sticky, setuid or setgid: beyond java.nio's reach
        super.setPermission(p, permission);
        return;
      }
      Files.setPosixFilePermissions(pathToFile(p).toPath(), posix(mode));
    }
  }

  static Set<PosixFilePermission> posix(short mode) {
    // PosixFilePermission's order is owner rwx, group rwx, others rwx: bit 8 down to bit 0
    PosixFilePermission[] all = PosixFilePermission.values();
    Set<PosixFilePermission> out = EnumSet.noneOf(PosixFilePermission.class);
    for (int i = 0; i < 9; i++) {
      if ((mode & (1 << (8 - i))) != 0) {
        out.add(all[i]);
      }
    }
    return out;
  }
}
