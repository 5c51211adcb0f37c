# NexGen ETL image for Astro (Airflow 3 + PySpark with S3A).
#
# Base image: Astro Runtime 3.3-8 ships Apache Airflow 3.3.2 (the version pinned in pyproject.toml / uv.lock).
# AIRFLOW_VERSION_OF_BASE_IMAGE=3.3.2  (read by tests/dags/test_image_consistency.py; change both together)
# How the mapping was determined (no live registry or docs access at the time of writing):
#   - Astronomer's runtime-version catalog, as reproduced in astronomer/astro-cli's test fixtures
#     (pkg/runtimeversions, scaffold): "3.3-8": airflowVersion "3.3.2", channel stable, released 2026-09-23;
#     3.3-5 and 3.3-7 carry 3.3.1; 3.3-1 and 3.3-2 carry 3.3.0. The same fixtures list Astronomer's
#     build apache-airflow 3.3.2+astro.1 for it.
#   - Public Astro projects build FROM astrocrpublic.azurecr.io/runtime:3.3-8 (Airflow 3 images are on
#     astrocrpublic.azurecr.io/runtime:<major.minor-patch>; Airflow 2 ones on quay.io/astronomer/astro-runtime).
#   Check on the first real build: docker run --rm <image> airflow version   (must print 3.3.2).
#
# Python flavour: Runtime 3.3 images ship Python 3.12, 3.13 and 3.14 (3.14 is the default tag); there is no
# 3.11 flavour. -python-3.12 is the closest to the project's Python (3.11 locally and in CI);
# pyproject.toml admits 3.11 and 3.12, and uv.lock / requirements.txt are resolved for both.
FROM astrocrpublic.azurecr.io/runtime:3.3-8-python-3.12

# The base image's ONBUILD triggers have already run at the FROM line above, in this order:
#   1. COPY packages.txt, then install it with apt-get as root (openjdk-17-jdk-headless, maven, procps);
#   2. COPY requirements.txt (exported from uv.lock by `make requirements`), then pip install it;
#   3. COPY --chown=astro:0 . .  -> the whole build context (filtered by .dockerignore) into
#      /usr/local/airflow (AIRFLOW_HOME, the WORKDIR), as user astro.
# So packages.txt and requirements.txt are deliberately NOT installed again here. See Astronomer's
# "Add Airflow providers, Python packages, and operating system packages" page (CLI docs) and
# astronomer/astro-cli docs ("Building FROM it runs its ONBUILD steps, which install the project's
# requirements.txt and packages.txt").

# Debian names the JDK directory after the architecture (amd64, arm64); BuildKit fills TARGETARCH.
ARG TARGETARCH=amd64
ENV NEXGEN_HOME=/usr/local/airflow \
    NEXGEN_JARS_DIR=/usr/local/airflow/jars/lib \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-${TARGETARCH}

# The project package itself: its dependencies are exactly requirements.txt, already installed above.
RUN pip install --no-cache-dir --no-deps .

# S3A jars: the same resolution step as a local checkout (`make jars`): hadoop-aws at the Hadoop version of
# the hadoop-client-api jar inside the installed pyspark, plus its AWS SDK, from Maven Central with Maven,
# into $NEXGEN_JARS_DIR; and the project's own two jars (jars/src with javac, the feature window kernel in
# jars/scala with the Scala compiler PySpark ships). The Maven cache is dropped in the same layer. spark-submit
# comes from the pip-installed pyspark (on PATH); the build fails here if it or Java is missing.
RUN bash scripts/resolve_jars.sh "$(command -v python)" \
    && rm -rf "${HOME}/.m2" \
    && test -x "${JAVA_HOME}/bin/java" \
    && command -v spark-submit

# The driver JVM's class data sharing archive (nexgen_etl/spark/local/class_archive.py): two small local Spark batches on generated
# data, once, at build time; a local-master transform then maps most of its ~23,000 classes instead of loading
# them from the jars. moto is a development dependency, not in this image: the batches publish to a local folder
# here, so S3A's and the AWS SDK's classes (~2,000) are read from their jars at run time.
RUN python -m nexgen_etl.dev.class_archive
