# The gradekit grading image: the one place student notebooks run.
#
# One file for every variant (build arguments):
#   TORCH=full   torch 2.14.1 + torchvision 0.29.1 (PyPI's wheel: runs on CPU, and on
#                NVIDIA GPUs given with `--gpus`; the CUDA runtime comes from the wheels,
#                the driver from the host through the NVIDIA container toolkit)
#   TORCH=none   the light variant: the same image without torch/torchvision (tests, and
#                numpy-only assignments)
#   TORCH_INDEX_URL  optional extra index for torch (e.g. a CPU-only wheel index, online)
#
# Offline: `scripts/fill-wheelhouse.sh` fills .wheelhouse/ on the host; it is bind-mounted
# into the RUN steps (never copied into a layer) and pip installs with --no-index.
# Online: with an empty .wheelhouse/ pip uses the package index; give a CA bundle with
#   --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt   when a proxy needs one.
# Build with BuildKit (DOCKER_BUILDKIT=1); `gradekit image build` does all of this and tags
# the result by the hash of its recipe, so only a change to this file, scripts/image/ or
# the build arguments makes a new image. Nothing of an assignment is ever built in.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Python (bookworm: 3.11) and nothing else: no compilers, no network tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* \
 && python3 -m venv /opt/gradekit/venv

ENV PATH=/opt/gradekit/venv/bin:/usr/local/bin:/usr/bin:/bin

# Shared pip options: the wheelhouse when it has wheels, the index otherwise.
COPY scripts/image/pip-install.sh /usr/local/lib/gradekit/pip-install.sh

# 1. The heavy layer (about 5 GB with torch). Depends only on its own requirement file.
ARG TORCH=full
ARG TORCH_INDEX_URL=
COPY scripts/image/requirements-torch.txt /usr/local/lib/gradekit/
RUN --mount=type=bind,source=.wheelhouse,target=/wheels \
    --mount=type=secret,id=cacert \
    if [ "$TORCH" = full ]; then \
        sh /usr/local/lib/gradekit/pip-install.sh -r /usr/local/lib/gradekit/requirements-torch.txt; \
    elif [ "$TORCH" != none ]; then echo "TORCH must be full or none, not $TORCH" >&2; exit 2; fi

# 2. The scientific stack and the kernel.
COPY scripts/image/requirements.txt scripts/image/requirements-torchvision.txt /usr/local/lib/gradekit/
RUN --mount=type=bind,source=.wheelhouse,target=/wheels \
    --mount=type=secret,id=cacert \
    sh /usr/local/lib/gradekit/pip-install.sh -r /usr/local/lib/gradekit/requirements.txt \
 && if [ "$TORCH" = full ]; then \
        sh /usr/local/lib/gradekit/pip-install.sh -r /usr/local/lib/gradekit/requirements-torchvision.txt; fi \
 && python -c "import numpy, scipy, sklearn, matplotlib, pandas, PIL, ipykernel" \
 && if [ "$TORCH" = full ]; then python -c "import torch, torchvision"; fi

# 3. The unprivileged user the kernel runs as (uid/gid 10001; the sandbox passes --user
#    10001:10001 and chowns the IPC folder to it), and the entry point.
RUN echo "student:x:10001:10001:gradekit student:/work:/usr/sbin/nologin" >>/etc/passwd \
 && echo "student:x:10001:" >>/etc/group \
 && mkdir -p /work /mnt/submission && chown 10001:10001 /work && chmod 0700 /work
COPY scripts/image/entry.sh /usr/local/bin/gradekit-entry

# NVIDIA_VISIBLE_DEVICES is left unset on purpose: the sandbox sets it to "void" for a
# container without GPUs, and Docker's --gpus sets it for one with.
ENV HOME=/work \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
ARG GRADEKIT_RECIPE=unknown
LABEL org.opencontainers.image.title="gradekit grading image" \
      gradekit.image=grading \
      gradekit.torch=${TORCH} \
      gradekit.recipe=${GRADEKIT_RECIPE}
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/gradekit-entry"]
CMD ["python", "-c", "import sys; print(sys.version)"]
