#!/bin/sh
# Pilot Protocol installer (pilot-ts build).
#
#   curl -fsSL <URL of this file> | sh
#   curl -fsSL <URL of this file> | PILOT_HOSTNAME=agent-7 sh
#   curl -fsSL <URL of this file> | sh -s uninstall        (or: sh install.sh uninstall)
#
# Where the program comes from: by default the npm registry. The platform package
# pilot-ts-<os>-<cpu> holds the one compiled executable; its version document
# (<registry>/<package>/<version or latest>) names the tarball (dist.tarball) and its SHA-512
# (dist.integrity), which is checked before anything is installed. With PILOT_RELEASE_URL, the
# release archives pilot-<os>-<arch>.tar.xz / .tar.gz from that location are used instead,
# verified against its checksums.txt (SHA-256).
#
# Installs pilotctl, pilot-daemon, pilot-gateway and rendezvous into ~/.pilot/bin (no sudo), writes
# ~/.pilot/config.json, adds ~/.pilot/bin to PATH via the shell rc file, and creates a service for
# the daemon: a systemd unit (system unit as root, user unit otherwise) on Linux, a launchd agent on
# macOS. Re-running upgrades in place: binaries are replaced, config.json, identity.json, trust.json
# and the service file are kept.
#
# Environment:
#   PILOT_HOSTNAME      hostname to claim (unit/plist `-hostname`, and config.json `hostname`)
#   PILOT_PUBLIC        non-empty: the daemon runs with `-public`
#   PILOT_REGISTRY      registry address   (default 34.71.57.205:9000)
#   PILOT_BEACON        beacon address     (default 34.71.57.205:9001)
#   PILOT_SOCKET        IPC socket         (default /tmp/pilot.sock)
#   PILOT_VERSION       version to install, e.g. 0.1.0 (default: latest)
#   PILOT_NPM_REGISTRY  npm registry base URL (default https://registry.npmjs.org)
#   PILOT_RELEASE_URL   instead of the registry: base URL holding pilot-<os>-<arch>.tar.xz and/or
#                       .tar.gz and checksums.txt (self-hosted archives)
#   PILOT_INSECURE_NO_CHECKSUM=1  (PILOT_RELEASE_URL only) install without a checksums.txt
#   PILOT_NO_SERVICE=1  write the service file but do not call systemctl/launchctl
#   PILOT_LINK_DIR      also symlink the binaries here if writable (default /usr/local/bin; "" = off)
#   PILOT_SYSTEMD_DIR   where to write pilot-daemon.service (default /etc/systemd/system as root,
#                       ${XDG_CONFIG_HOME:-~/.config}/systemd/user otherwise)
#   PILOT_LAUNCHD_DIR   where to write the launchd plist (default ~/Library/LaunchAgents)
#
# Differences from the reference installer, all deliberate:
#   - it installs pilot-ts (from the npm registry) and verifies the download (SHA-512 integrity, or
#     checksums.txt) before anything is installed;
#   - everything is staged in a temp dir and moved into place at the end: a failed run leaves
#     no half-installed state;
#   - no Go source fallback (this is not the Go implementation): a missing release is an error;
#   - an existing config.json is kept (the reference overwrote it), the file is mode 0600, and
#     PILOT_HOSTNAME also reaches `pilotctl daemon start` through config.json's `hostname`;
#   - no sudo: root gets a system unit, other users a systemd *user* unit; the unit / launchd agent
#     is enabled and started (the reference only wrote it);
#   - uninstall also removes the /usr/local/bin symlinks it made and the PATH line it added.
set -eu

DEFAULT_REGISTRY="34.71.57.205:9000"
DEFAULT_BEACON="34.71.57.205:9001"
REGISTRY="${PILOT_REGISTRY:-$DEFAULT_REGISTRY}"
BEACON="${PILOT_BEACON:-$DEFAULT_BEACON}"
SOCKET="${PILOT_SOCKET:-/tmp/pilot.sock}"
HOSTNAME_OPT="${PILOT_HOSTNAME:-}"
PUBLIC_OPT="${PILOT_PUBLIC:-}"
NO_SERVICE="${PILOT_NO_SERVICE:-}"
LINK_DIR="${PILOT_LINK_DIR-/usr/local/bin}"
VERSION="${PILOT_VERSION:-latest}"
VERSION="${VERSION#v}"
NPM_REGISTRY="${PILOT_NPM_REGISTRY:-https://registry.npmjs.org}"
NPM_REGISTRY="${NPM_REGISTRY%/}"
BASE_URL=""
[ -z "${PILOT_RELEASE_URL:-}" ] || BASE_URL="${PILOT_RELEASE_URL%/}"

if [ -z "${HOME:-}" ]; then
  echo "Error: HOME is not set" >&2
  exit 1
fi
PILOT_DIR="$HOME/.pilot"
BIN_DIR="$PILOT_DIR/bin"
CONFIG="$PILOT_DIR/config.json"
IDENTITY="$PILOT_DIR/identity.json"
TOOLS="pilotctl pilot-daemon pilot-gateway rendezvous"
UNIT_NAME="pilot-daemon.service"
PLIST_LABEL="com.vulturelabs.pilot-daemon"
RC_MARK="# Pilot Protocol"

die() {
  echo "Error: $*" >&2
  exit 1
}

is_root() { [ "$(id -u)" = "0" ]; }

# Values end up unquoted in a systemd unit, a plist and JSON: accept only characters that need no
# escaping anywhere, and refuse early (before anything is touched) otherwise.
check_safe() { # name value allowed-description
  case "$2" in
    *[!A-Za-z0-9._:/@+\[\]-]*) die "$1 contains characters that cannot be written safely into the service file: '$2'" ;;
  esac
}

systemd_dir() {
  if [ -n "${PILOT_SYSTEMD_DIR:-}" ]; then
    echo "$PILOT_SYSTEMD_DIR"
  elif is_root; then
    echo "/etc/systemd/system"
  else
    echo "${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
  fi
}

# systemctl for the unit's scope (system when root, --user otherwise).
sctl() {
  if is_root; then systemctl "$@"; else systemctl --user "$@"; fi
}

launchd_plist() { echo "${PILOT_LAUNCHD_DIR:-$HOME/Library/LaunchAgents}/$PLIST_LABEL.plist"; }

rc_file() {
  case "$(basename "${SHELL:-sh}")" in
    zsh) echo "$HOME/.zshrc" ;;
    bash) echo "$HOME/.bashrc" ;;
    *) echo "$HOME/.profile" ;;
  esac
}

# Remove the block this installer appends to an rc file: an optional blank line, RC_MARK, and
# the export line naming BIN_DIR. Anything else in the file is left untouched.
strip_rc() { # file
  [ -f "$1" ] || return 0
  grep -F "$BIN_DIR" "$1" >/dev/null 2>&1 || return 0
  awk -v mark="$RC_MARK" -v bin="$BIN_DIR" '
    { lines[NR] = $0 }
    END {
      for (i = 1; i <= NR; i++) {
        if (lines[i] == mark && index(lines[i + 1], "export PATH=\"" bin ":") == 1) {
          if (i > 1 && lines[i - 1] == "" && !dropped[i - 1]) dropped[i - 1] = 1
          dropped[i] = 1; dropped[i + 1] = 1; i++
        }
      }
      for (i = 1; i <= NR; i++) if (!dropped[i]) print lines[i]
    }' "$1" >"$1.pilot-tmp"
  cat "$1.pilot-tmp" >"$1" # keep the file's inode, owner and mode
  rm -f "$1.pilot-tmp"
}

fetch() { # url dest
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 --connect-timeout 30 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "curl or wget is required to download Pilot Protocol"
  fi
}

sha256_of() { # file
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | awk '{print $1}'
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | awk '{print $1}'
  elif command -v openssl >/dev/null 2>&1; then
    openssl dgst -sha256 -r "$1" | awk '{print $1}'
  else
    die "no SHA-256 tool found (need sha256sum, shasum or openssl)"
  fi
}

sha512_hex() { # file
  if command -v sha512sum >/dev/null 2>&1; then
    sha512sum "$1" | awk '{print $1}'
  elif command -v openssl >/dev/null 2>&1; then
    openssl dgst -sha512 -r "$1" | awk '{print $1}'
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 512 "$1" | awk '{print $1}'
  else
    die "no SHA-512 tool found (need sha512sum, openssl or shasum)"
  fi
}

# The hex digest inside an SRI string "sha512-<base64>" (lower case, no spaces).
sri_hex() { # sri
  b64="${1#sha512-}"
  if command -v base64 >/dev/null 2>&1; then
    bin="$(printf '%s' "$b64" | base64 -d 2>/dev/null | od -An -v -tx1)" ||
      bin="$(printf '%s' "$b64" | base64 -D 2>/dev/null | od -An -v -tx1)" || bin=""
  elif command -v openssl >/dev/null 2>&1; then
    bin="$(printf '%s\n' "$b64" | openssl base64 -d -A 2>/dev/null | od -An -v -tx1)" || bin=""
  else
    die "base64 or openssl is needed to read the package integrity"
  fi
  printf '%s' "$bin" | tr -d ' \n'
}

# The string value of the first "key": "value" in a JSON document (flattened to one line). The
# registry's version document has one "dist" object, so "tarball", "integrity" and the top-level
# "version" occur first where this reads them.
json_str() { # file key
  tr -d '\n\r' <"$1" | grep -o "\"$2\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" | head -n 1 |
    sed 's/.*:[[:space:]]*"\([^"]*\)"$/\1/'
}

# Download the platform package named in $NPM_PKG from the npm registry into $STAGE and unpack its
# executable as $STAGE/x/pilotctl (plus hard links under the other tool names).
fetch_npm() {
  meta_url="$NPM_REGISTRY/$NPM_PKG/$VERSION"
  echo "Downloading $NPM_PKG ($VERSION) from $NPM_REGISTRY..."
  fetch "$meta_url" "$STAGE/meta.json" ||
    die "cannot read $meta_url (no $NPM_PKG@$VERSION on the registry, or no network; set PILOT_VERSION, PILOT_NPM_REGISTRY or PILOT_RELEASE_URL)"
  tarball="$(json_str "$STAGE/meta.json" tarball)"
  integrity="$(json_str "$STAGE/meta.json" integrity)"
  got_version="$(json_str "$STAGE/meta.json" version)"
  case "$tarball" in
    https://* | http://*) ;;
    *) die "$meta_url has no dist.tarball URL (not an npm version document?)" ;;
  esac
  case "$integrity" in
    sha512-?*) ;;
    *) die "$meta_url has no sha512 dist.integrity for $NPM_PKG (got '${integrity:-none}'); refusing to install unverified" ;;
  esac
  [ -z "$got_version" ] || VERSION="$got_version"
  fetch "$tarball" "$STAGE/pkg.tgz" || die "download failed: $tarball"
  want="$(sri_hex "$integrity")"
  [ "${#want}" -eq 128 ] || die "malformed dist.integrity for $NPM_PKG: $integrity"
  got="$(sha512_hex "$STAGE/pkg.tgz")"
  [ "$got" = "$want" ] || die "integrity mismatch for $NPM_PKG@$VERSION: expected $integrity (corrupted or tampered download; nothing was installed)"
  echo "  Integrity OK (sha512, $NPM_PKG@$VERSION)"
  mkdir "$STAGE/pkg" "$STAGE/x"
  tar -xzf "$STAGE/pkg.tgz" -C "$STAGE/pkg" || die "cannot extract $NPM_PKG (corrupt tarball?)"
  [ -f "$STAGE/pkg/package/bin/pilot" ] || die "$NPM_PKG@$VERSION does not contain bin/pilot"
  mv "$STAGE/pkg/package/bin/pilot" "$STAGE/x/pilotctl"
  for t in pilot-daemon pilot-gateway rendezvous; do ln "$STAGE/x/pilotctl" "$STAGE/x/$t"; done
}

# Download pilot-<os>-<arch>.tar.xz (when xz exists and the release lists it) or .tar.gz from
# $BASE_URL, verify it against checksums.txt and unpack it into $STAGE/x.
fetch_archive() {
  have_sums=""
  if fetch "$BASE_URL/checksums.txt" "$STAGE/checksums.txt" 2>/dev/null; then have_sums=1; fi
  sum_of() { awk -v n="$1" '$2 == n || $2 == "*" n { print $1; exit }' "$STAGE/checksums.txt"; }
  ASSET="$ASSET_BASE.tar.gz"
  unpack="gzip"
  if [ -n "$have_sums" ] && command -v xz >/dev/null 2>&1 && [ -n "$(sum_of "$ASSET_BASE.tar.xz")" ]; then
    ASSET="$ASSET_BASE.tar.xz"
    unpack="xz"
  fi
  echo "Downloading $ASSET from $BASE_URL..."
  fetch "$BASE_URL/$ASSET" "$STAGE/$ASSET" ||
    die "download failed: $BASE_URL/$ASSET (no release for $OS/$ARCH, or no network; check PILOT_RELEASE_URL)"
  if [ -z "$have_sums" ] && [ -z "${PILOT_INSECURE_NO_CHECKSUM:-}" ]; then
    die "download failed: $BASE_URL/checksums.txt (cannot verify $ASSET; set PILOT_INSECURE_NO_CHECKSUM=1 to install anyway)"
  fi
  if [ -n "$have_sums" ]; then
    want="$(sum_of "$ASSET")"
    [ -n "$want" ] || die "checksums.txt at $BASE_URL has no entry for $ASSET"
    got="$(sha256_of "$STAGE/$ASSET")"
    [ "$got" = "$want" ] || die "checksum mismatch for $ASSET: expected $want, got $got (corrupted or tampered download; nothing was installed)"
    echo "  Checksum OK (sha256 $got)"
  else
    echo "  Warning: no checksums.txt at $BASE_URL; installing unverified (PILOT_INSECURE_NO_CHECKSUM set)"
  fi
  mkdir "$STAGE/x"
  if [ "$unpack" = xz ]; then
    xz -dc "$STAGE/$ASSET" | tar -xf - -C "$STAGE/x" || die "cannot extract $ASSET (corrupt archive?)"
  else
    tar -xzf "$STAGE/$ASSET" -C "$STAGE/x" || die "cannot extract $ASSET (corrupt archive?)"
  fi
}

# ----------------------------------------------------------------------------------------------
# Uninstall
# ----------------------------------------------------------------------------------------------
uninstall() {
  echo ""
  echo "  Uninstalling Pilot Protocol..."
  echo ""
  ctl=""
  if [ -x "$BIN_DIR/pilotctl" ]; then
    ctl="$BIN_DIR/pilotctl"
  elif command -v pilotctl >/dev/null 2>&1; then
    ctl="pilotctl"
  fi
  if [ -n "$ctl" ]; then
    "$ctl" daemon stop >/dev/null 2>&1 || true
    "$ctl" gateway stop >/dev/null 2>&1 || true
  fi

  os="$(uname -s | tr '[:upper:]' '[:lower:]')"
  if [ "$os" = "darwin" ]; then
    plist="$(launchd_plist)"
    if [ -f "$plist" ]; then
      if [ -z "$NO_SERVICE" ]; then launchctl unload "$plist" >/dev/null 2>&1 || true; fi
      rm -f "$plist"
      echo "  Removed LaunchAgent"
    fi
  else
    unit="$(systemd_dir)/$UNIT_NAME"
    if [ -f "$unit" ]; then
      if [ -z "$NO_SERVICE" ] && command -v systemctl >/dev/null 2>&1; then
        sctl disable --now pilot-daemon >/dev/null 2>&1 || true
      fi
      rm -f "$unit"
      # Drop the ~/.config/systemd/user directories if the installer's unit was all they held.
      if ! is_root && [ -z "${PILOT_SYSTEMD_DIR:-}" ]; then
        d="$(systemd_dir)"
        while [ "$d" != "$HOME" ] && [ "$d" != "/" ] && rmdir "$d" 2>/dev/null; do d="$(dirname "$d")"; done
      fi
      if [ -z "$NO_SERVICE" ] && command -v systemctl >/dev/null 2>&1; then
        sctl daemon-reload >/dev/null 2>&1 || true
      fi
      echo "  Removed systemd service"
    elif ! is_root && [ -f "/etc/systemd/system/$UNIT_NAME" ]; then
      echo "  Skipped systemd removal (run as root to remove /etc/systemd/system/$UNIT_NAME)"
    fi
  fi

  if [ -n "$LINK_DIR" ] && [ -d "$LINK_DIR" ]; then
    for t in $TOOLS; do
      l="$LINK_DIR/$t"
      if [ -L "$l" ]; then
        case "$(readlink "$l")" in
          "$BIN_DIR"/*) rm -f "$l" ;;
        esac
      fi
    done
  fi

  for rc in "$HOME/.zshrc" "$HOME/.bashrc" "$HOME/.profile"; do
    strip_rc "$rc"
    # An rc file this installer created and that is now empty goes too.
    if [ -f "$PILOT_DIR/.rc-created" ] && grep -Fx "$rc" "$PILOT_DIR/.rc-created" >/dev/null 2>&1 && [ ! -s "$rc" ]; then
      rm -f "$rc"
    fi
  done

  if [ -d "$PILOT_DIR" ]; then
    rm -rf "$PILOT_DIR"
    echo "  Removed $PILOT_DIR"
  fi
  rm -f "$SOCKET"
  echo ""
  echo "  Pilot Protocol uninstalled."
  echo ""
}

# ----------------------------------------------------------------------------------------------
# Install
# ----------------------------------------------------------------------------------------------
STAGE=""
NEW_BIN=""
OLD_BIN=""
CREATED_PILOT_DIR=""
cleanup() {
  [ -n "$STAGE" ] && rm -rf "$STAGE"
  [ -n "$NEW_BIN" ] && rm -rf "$NEW_BIN"
  # A fresh install that failed before its commit step removes the directory it created.
  if [ -n "$CREATED_PILOT_DIR" ] && [ -d "$PILOT_DIR" ] && [ ! -d "$BIN_DIR" ]; then
    rmdir "$PILOT_DIR" 2>/dev/null || true
  fi
  return 0
}

install_pilot() {
  # 1. Platform (same messages and mapping as the reference installer).
  OS="$(uname -s | tr '[:upper:]' '[:lower:]')"
  ARCH="$(uname -m)"
  case "$ARCH" in
    x86_64 | amd64) ARCH="amd64" ;;
    aarch64 | arm64) ARCH="arm64" ;;
    *) die "unsupported architecture: $ARCH" ;;
  esac
  case "$OS" in
    linux | darwin) ;;
    *) die "unsupported OS: $OS" ;;
  esac
  ASSET_BASE="pilot-$OS-$ARCH"
  if [ "$ARCH" = amd64 ]; then NPM_PKG="pilot-ts-$OS-x64"; else NPM_PKG="pilot-ts-$OS-$ARCH"; fi

  check_safe "HOME" "$HOME"
  check_safe "PILOT_REGISTRY" "$REGISTRY"
  check_safe "PILOT_BEACON" "$BEACON"
  check_safe "PILOT_SOCKET" "$SOCKET"
  [ -z "$HOSTNAME_OPT" ] || check_safe "PILOT_HOSTNAME" "$HOSTNAME_OPT"
  check_safe "PILOT_VERSION" "$VERSION"

  echo ""
  echo "  Pilot Protocol"
  echo "  The network stack for AI agents."
  echo ""
  echo "  Platform:   $OS/$ARCH"
  echo "  Registry:   $REGISTRY"
  echo "  Beacon:     $BEACON"
  echo ""

  UPDATE=""
  if [ -x "$BIN_DIR/pilotctl" ]; then
    UPDATE=1
    cur="$("$BIN_DIR/pilotctl" version 2>/dev/null | head -n 1)" || cur=""
    [ -n "$cur" ] || cur="unknown"
    echo "  Existing install detected ($cur)"
    echo "  Updating binaries..."
    echo ""
  fi

  # 2. Download and verify, all inside a temp dir.
  STAGE="$(mktemp -d 2>/dev/null || mktemp -d -t pilot)"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  if [ -n "$BASE_URL" ]; then
    fetch_archive
    src_name="$ASSET"
  else
    fetch_npm
    src_name="$NPM_PKG@$VERSION"
  fi
  # Release member names: ours (pilot-daemon, …) or the reference's (daemon, gateway).
  src_of() { # tool
    for cand in "$1" "$(echo "$1" | sed 's/^pilot-//')"; do
      if [ -f "$STAGE/x/$cand" ]; then
        echo "$STAGE/x/$cand"
        return 0
      fi
    done
    return 1
  }
  src_of pilotctl >/dev/null || die "$src_name does not contain pilotctl"
  src_of pilot-daemon >/dev/null || die "$src_name does not contain pilot-daemon (or daemon)"
  src_of pilot-gateway >/dev/null || die "$src_name does not contain pilot-gateway (or gateway)"

  # 3. Stage the new bin dir next to the old one (same filesystem ⇒ the final swap is renames).
  if [ ! -d "$PILOT_DIR" ]; then
    mkdir -p "$PILOT_DIR"
    CREATED_PILOT_DIR=1
  fi
  NEW_BIN="$PILOT_DIR/.bin.new.$$"
  rm -rf "$NEW_BIN"
  mkdir "$NEW_BIN"
  cp "$(src_of pilotctl)" "$NEW_BIN/pilotctl"
  chmod 755 "$NEW_BIN/pilotctl"
  for t in $TOOLS; do
    [ "$t" = pilotctl ] && continue
    s="$(src_of "$t")" || continue # rendezvous is optional (the reference does not install it)
    # One program under several names: hard-link identical files instead of copying ~100 MB each.
    if cmp -s "$s" "$NEW_BIN/pilotctl"; then
      ln "$NEW_BIN/pilotctl" "$NEW_BIN/$t" 2>/dev/null || cp "$s" "$NEW_BIN/$t"
    else
      cp "$s" "$NEW_BIN/$t"
    fi
    chmod 755 "$NEW_BIN/$t"
  done
  # Refuse binaries this machine cannot execute (wrong architecture, missing loader, noexec).
  run_rc=0
  "$NEW_BIN/pilotctl" version >/dev/null 2>&1 || run_rc=$?
  if [ "$run_rc" -eq 126 ] || [ "$run_rc" -eq 127 ]; then
    die "the downloaded pilotctl cannot run on this machine (exit $run_rc); nothing was installed"
  fi

  # 4. Config and service files, generated into the stage dir.
  WRITE_CONFIG=""
  if [ ! -f "$CONFIG" ]; then
    WRITE_CONFIG=1
    {
      echo "{"
      echo "  \"beacon\": \"$BEACON\","
      echo "  \"encrypt\": true,"
      [ -z "$HOSTNAME_OPT" ] || echo "  \"hostname\": \"$HOSTNAME_OPT\","
      echo "  \"identity\": \"$IDENTITY\","
      echo "  \"registry\": \"$REGISTRY\","
      echo "  \"socket\": \"$SOCKET\""
      echo "}"
    } >"$STAGE/config.json"
  fi

  SERVICE_FILE=""
  WRITE_SERVICE=""
  if [ "$OS" = "linux" ]; then
    SERVICE_FILE="$(systemd_dir)/$UNIT_NAME"
    extra=""
    [ -z "$HOSTNAME_OPT" ] || extra="$extra -hostname $HOSTNAME_OPT"
    [ -z "$PUBLIC_OPT" ] || extra="$extra -public"
    if is_root; then
      user_line="User=$(id -un)"
      wanted="multi-user.target"
    else
      user_line=""
      wanted="default.target"
    fi
    {
      echo "[Unit]"
      echo "Description=Pilot Protocol Daemon"
      echo "After=network-online.target"
      echo "Wants=network-online.target"
      echo ""
      echo "[Service]"
      echo "Type=simple"
      [ -z "$user_line" ] || echo "$user_line"
      echo "Environment=HOME=$HOME"
      echo "ExecStart=$BIN_DIR/pilot-daemon \\"
      echo "  -registry $REGISTRY \\"
      echo "  -beacon $BEACON \\"
      echo "  -listen :4000 \\"
      echo "  -socket $SOCKET \\"
      echo "  -identity $IDENTITY \\"
      echo "  -encrypt$extra"
      echo "Restart=on-failure"
      echo "RestartSec=5"
      echo ""
      echo "[Install]"
      echo "WantedBy=$wanted"
    } >"$STAGE/service"
  else
    SERVICE_FILE="$(launchd_plist)"
    {
      echo '<?xml version="1.0" encoding="UTF-8"?>'
      echo '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">'
      echo '<plist version="1.0">'
      echo '<dict>'
      echo "  <key>Label</key>"
      echo "  <string>$PLIST_LABEL</string>"
      echo "  <key>ProgramArguments</key>"
      echo "  <array>"
      for a in "$BIN_DIR/pilot-daemon" -registry "$REGISTRY" -beacon "$BEACON" -listen :4000 \
        -socket "$SOCKET" -identity "$IDENTITY" -encrypt; do
        echo "    <string>$a</string>"
      done
      if [ -n "$HOSTNAME_OPT" ]; then
        echo "    <string>-hostname</string>"
        echo "    <string>$HOSTNAME_OPT</string>"
      fi
      [ -z "$PUBLIC_OPT" ] || echo "    <string>-public</string>"
      echo "  </array>"
      echo "  <key>RunAtLoad</key>"
      echo "  <true/>"
      echo "  <key>KeepAlive</key>"
      echo "  <dict>"
      echo "    <key>SuccessfulExit</key>"
      echo "    <false/>"
      echo "  </dict>"
      echo "  <key>StandardOutPath</key>"
      echo "  <string>$PILOT_DIR/daemon.log</string>"
      echo "  <key>StandardErrorPath</key>"
      echo "  <string>$PILOT_DIR/daemon.log</string>"
      echo '</dict>'
      echo '</plist>'
    } >"$STAGE/service"
  fi
  # Upgrades keep an existing service file (it may carry the user's own edits).
  if [ -z "$UPDATE" ] || [ ! -f "$SERVICE_FILE" ]; then WRITE_SERVICE=1; fi

  # 5. Commit: everything below is renames and small copies.
  echo "Installing binaries..."
  if [ -d "$BIN_DIR" ]; then
    OLD_BIN="$PILOT_DIR/.bin.old.$$"
    mv "$BIN_DIR" "$OLD_BIN"
  fi
  mv "$NEW_BIN" "$BIN_DIR"
  NEW_BIN=""
  [ -z "$OLD_BIN" ] || rm -rf "$OLD_BIN"

  if [ -n "$LINK_DIR" ] && [ -d "$LINK_DIR" ] && [ -w "$LINK_DIR" ]; then
    for t in $TOOLS; do
      [ -e "$BIN_DIR/$t" ] && ln -sf "$BIN_DIR/$t" "$LINK_DIR/$t"
    done
    echo "  Symlinked to $LINK_DIR"
  fi

  if [ -n "$WRITE_CONFIG" ]; then
    (umask 077 && cp "$STAGE/config.json" "$CONFIG.tmp")
    mv "$CONFIG.tmp" "$CONFIG"
    echo "Config written to $CONFIG"
  else
    echo "Config kept: $CONFIG"
  fi

  if [ -n "$WRITE_SERVICE" ]; then
    mkdir -p "$(dirname "$SERVICE_FILE")"
    cp "$STAGE/service" "$SERVICE_FILE.tmp"
    chmod 644 "$SERVICE_FILE.tmp"
    mv "$SERVICE_FILE.tmp" "$SERVICE_FILE"
  fi

  # 6. PATH line (idempotent).
  case ":${PATH:-}:" in
    *":$BIN_DIR:"*) ;;
    *)
      rc="$(rc_file)"
      if ! grep -F "$BIN_DIR" "$rc" >/dev/null 2>&1; then
        [ -e "$rc" ] || echo "$rc" >>"$PILOT_DIR/.rc-created"
        {
          echo ""
          echo "$RC_MARK"
          echo "export PATH=\"$BIN_DIR:\$PATH\""
        } >>"$rc"
        echo "  Added $BIN_DIR to PATH in $rc"
      fi
      ;;
  esac

  # 7. Service registration.
  echo ""
  if [ "$OS" = "linux" ]; then
    if is_root; then scope=""; else scope="--user "; fi
    echo "Systemd unit: $SERVICE_FILE"
    started=""
    if [ -z "$NO_SERVICE" ] && command -v systemctl >/dev/null 2>&1; then
      if sctl daemon-reload >/dev/null 2>&1; then
        if [ -n "$UPDATE" ]; then
          # Restart only a daemon that is running, so it picks up the new binary.
          if sctl is-active --quiet pilot-daemon 2>/dev/null; then
            sctl restart pilot-daemon >/dev/null 2>&1 && echo "  Restarted pilot-daemon"
          fi
          started=1
        elif sctl enable --now pilot-daemon >/dev/null 2>&1; then
          echo "  Enabled and started pilot-daemon (systemctl ${scope}status pilot-daemon)"
          started=1
        fi
      fi
    fi
    if [ -z "$started" ]; then
      echo "  Start:   systemctl ${scope}daemon-reload && systemctl ${scope}enable --now pilot-daemon"
    fi
    if ! is_root; then
      echo "  Keep it running after logout: loginctl enable-linger $(id -un)"
    fi
  else
    echo "LaunchAgent: $SERVICE_FILE"
    loaded=""
    if [ -z "$NO_SERVICE" ] && command -v launchctl >/dev/null 2>&1; then
      if [ -n "$UPDATE" ]; then launchctl unload "$SERVICE_FILE" >/dev/null 2>&1 || true; fi
      if launchctl load -w "$SERVICE_FILE" >/dev/null 2>&1; then
        echo "  Loaded $PLIST_LABEL"
        loaded=1
      fi
    fi
    if [ -z "$loaded" ]; then
      echo "  Start:   launchctl load -w $SERVICE_FILE"
    fi
    echo "  Stop:    launchctl unload $SERVICE_FILE"
  fi

  echo ""
  if [ -n "$UPDATE" ]; then
    echo "Updated to $VERSION:"
  else
    echo "Installed:"
  fi
  echo "  pilot-daemon   $BIN_DIR/pilot-daemon"
  echo "  pilotctl       $BIN_DIR/pilotctl"
  echo "  pilot-gateway  $BIN_DIR/pilot-gateway"
  [ ! -e "$BIN_DIR/rendezvous" ] || echo "  rendezvous     $BIN_DIR/rendezvous"
  echo ""
  echo "Config: $CONFIG"
  echo "  Registry: $REGISTRY"
  echo "  Beacon:   $BEACON"
  echo "  Socket:   $SOCKET"
  echo "  Identity: $IDENTITY"
  echo ""
  echo "Get started:"
  echo "  export PATH=\"$BIN_DIR:\$PATH\"    # if not restarting your shell"
  if [ -n "$HOSTNAME_OPT" ]; then
    echo "  pilotctl daemon start --hostname $HOSTNAME_OPT"
  else
    echo "  pilotctl daemon start --hostname <your-agent-name>"
  fi
  echo "  pilotctl info"
  echo "  pilotctl ping <other-agent>"
  echo ""
}

case "${1:-install}" in
  install) install_pilot ;;
  uninstall) uninstall ;;
  -h | --help | help)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" 2>/dev/null || true
    ;;
  *) die "unknown argument: $1 (use: install.sh [install|uninstall])" ;;
esac
