#!/usr/bin/env bash
# Installs the system tools the lab and the workshop need, on Debian/Ubuntu as root.
# Not root: prints the exact command to run instead. Installs nothing that is already there.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have iptables  || need+=(iptables)
have nft       || need+=(nftables)
have conntrack || need+=(conntrack)
have ip        || need+=(iproute2)
have fio       || need+=(fio)
have unshare   || need+=(util-linux)
have nsenter   || need+=(util-linux)
have dot       || need+=(graphviz)
have kubectl   || need+=(kubernetes-client)
# the lab's real containers: crun runs them, mmdebstrap builds the images once, docker-registry serves them,
# skopeo checks the registry in tests
have crun            || need+=(crun)
have mmdebstrap      || need+=(mmdebstrap)
have docker-registry || need+=(docker-registry)
have skopeo          || need+=(skopeo)
# persistent volumes: ext4 on loop devices (local class); the remote class' SFTP server and the node's sshfs (FUSE)
have mkfs.ext4       || need+=(e2fsprogs)
have losetup         || need+=(mount)
have sshfs           || need+=(sshfs)
have fusermount3     || need+=(fuse3)
[ -x /usr/lib/openssh/sftp-server ] || need+=(openssh-sftp-server)
# the browser test: Playwright drives Debian's chromium (its own browser download cannot work offline)
have chromium         || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  echo "system tools: all present"
  exit 0
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if ! have apt-get; then
  echo "system tools missing: ${need[*]} (install them with your package manager)" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system tools missing: ${need[*]}"
  echo "run: sudo apt-get update && sudo apt-get install -y ${need[*]}"
  exit 0
fi
echo "installing system tools: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
