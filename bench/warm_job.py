"""spark-submit entry point of bench/warm.py: the transform job run on several frozen plans, one after the other, in
one driver (one JVM, one session), as a warm Spark would run them. Prints one JSON line per plan: its wall seconds,
the CPU seconds of the driver JVM and of this Python process during it, and the JVM's peak RSS so far."""

import json
import os
import sys
import time

if __name__ == "__main__":
    from nexgen_etl.spark.local.pyspark_path import prefer_installed_pyspark

    prefer_installed_pyspark()

    from nexgen_etl.core.discovery import BatchPlan  # noqa: E402
    from nexgen_etl.spark.io import HadoopFS  # noqa: E402
    from nexgen_etl.spark.job import BatchJob, build_session  # noqa: E402

    hz = os.sysconf("SC_CLK_TCK")
    jvm = os.getppid()  # spark-submit's JVM starts this process

    def cpu() -> float:
        with open(f"/proc/{jvm}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        t = os.times()
        return (int(fields[11]) + int(fields[12])) / hz + t.user + t.system

    def peak_mb() -> float:
        with open(f"/proc/{jvm}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

    t0, c0 = time.monotonic(), cpu()
    spark = build_session()
    fs = HadoopFS(spark)
    print(json.dumps({"session_s": round(time.monotonic() - t0, 3), "cpu_s": round(cpu() - c0, 3)}), flush=True)
    for uri in sys.argv[1:]:
        t0, c0 = time.monotonic(), cpu()
        plan = BatchPlan.from_json(fs.read_text(uri))
        status = BatchJob(spark, plan).run().status
        spark.catalog.clearCache()
        print(json.dumps({"plan": uri, "status": status, "wall_s": round(time.monotonic() - t0, 3),
                          "cpu_s": round(cpu() - c0, 3), "jvm_peak_mb": round(peak_mb(), 1)}), flush=True)
    spark.stop()
