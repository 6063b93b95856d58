#!/bin/sh
# /init of the bootbrain lab initramfs (run by busybox ash as PID 1).
#
# Kernel command line understood (everything else is ignored):
#   ip=<ip>:<server>:<gw>:<netmask>:<hostname>:<iface>:<autoconf>:<dns0>:<dns1>
#       static IPv4 configuration in the kernel's nfsroot.rst format; the
#       Debian kernel has no CONFIG_IP_PNP, so this script applies it.
#       <netmask> may be dotted or a prefix length; empty <iface> = eth0.
#       ip=dhcp (or <autoconf> = dhcp/on/any) runs busybox udhcpc instead.
#   bootbrain.meta=<url>   GET it first; its first line is POSTed as meta=
#   bootbrain.metajson=<url>
#                          GET it next: a JSON object; its top-level "hostname"
#                          and the first string of its top-level "ssh_keys"
#                          list are POSTed as meta_hostname= and ssh_key=
#                          (empty when absent). Parsed with sed/awk, so the
#                          document must be pretty-printed with two-space
#                          indentation, one member or list item per line, as
#                          Python's json.dumps(indent=2) writes it (bootbrain's
#                          metadata.json); only the escapes \" \\ \/ are decoded.
#   bootbrain.done=<url>   POST ip=<addr/prefix on iface>&hostname=&iface=
#                          [&meta=][&meta_hostname=&ssh_key=]
#                          (application/x-www-form-urlencoded)
#   bootbrain.hold=<secs>  sleep before powering off (default 0)
#   bootbrain.debug        keep kernel messages on the console, dump dmesg
# URLs must not contain spaces (the kernel splits parameters on them).
#
# Console protocol: every line this script prints starts with
# "BOOTBRAIN-LAB: "; the last one is
# "BOOTBRAIN-LAB-DONE status=ok|fail ..." followed by poweroff -f.
# @MODULES@ is replaced at build time by the module names in load order.

PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH
MODULES="@MODULES@"

log() { echo "BOOTBRAIN-LAB: $*"; }

finish() {
    status=$1
    shift
    if [ "$status" != ok ] || [ -n "$debug" ]; then
        log "dmesg tail follows"
        dmesg | tail -n 40 | sed 's/^/BOOTBRAIN-LAB: dmesg: /'
    fi
    echo "BOOTBRAIN-LAB-DONE status=$status $*"
    case $hold in
        '' | *[!0-9]*) ;;
        *) sleep "$hold" ;;
    esac
    sync
    poweroff -f
    sleep 5
    echo o >/proc/sysrq-trigger
    while :; do sleep 60; done
}

# Percent-encode $1 for application/x-www-form-urlencoded (unreserved kept).
urlencode() {
    printf '%s' "$1" | od -An -v -tx1 | tr -s ' \n' '\n\n' | while read -r h; do
        case $h in
            '') ;;
            3[0-9] | 4[1-9a-f] | 5[0-9a] | 6[1-9a-f] | 7[0-9a] | 2d | 2e | 5f | 7e)
                printf "\\x$h" ;;
            *) printf '%%%s' "$h" | tr a-f A-F ;;
        esac
    done
}

hex() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }

# JSON string escapes \" \\ \/ decoded (stdin -> stdout); others stay as written.
json_unescape() { sed 's|\\\(["\\/]\)|\1|g'; }

# The top-level string member "$2" of the JSON document $1 (pretty-printed with
# two-space indentation: see bootbrain.metajson above); empty if there is none.
json_string() {
    printf '%s\n' "$1" | sed -n "s/^  \"$2\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1 |
        json_unescape
}

# The first item of the top-level list member "$2" of $1 if it is a string.
json_first_string() {
    printf '%s\n' "$1" | awk -v open="  \"$2\": [" '
        found { if (sub(/^    "/, "")) { sub(/",?$/, ""); print }; exit }
        $0 == open { found = 1 }' | json_unescape
}

# Dotted netmask (or prefix length) -> prefix length; empty -> class default.
mask2prefix() {
    case $1 in
        '')
            first=${2%%.*}
            if [ "$first" -lt 128 ]; then echo 8
            elif [ "$first" -lt 192 ]; then echo 16
            else echo 24; fi
            return ;;
        *.*) ;;
        *) echo "$1"; return ;;
    esac
    n=0
    saved_ifs=$IFS
    IFS=.
    for octet in $1; do
        case $octet in
            255) n=$((n + 8)) ;; 254) n=$((n + 7)) ;; 252) n=$((n + 6)) ;;
            248) n=$((n + 5)) ;; 240) n=$((n + 4)) ;; 224) n=$((n + 3)) ;;
            192) n=$((n + 2)) ;; 128) n=$((n + 1)) ;;
        esac
    done
    IFS=$saved_ifs
    echo "$n"
}

# Retry "$@" up to 5 times (2 s apart); prints its stdout.
fetch() {
    tries=0
    while :; do
        tries=$((tries + 1))
        if out=$("$@"); then
            printf '%s' "$out"
            return 0
        fi
        [ "$tries" -ge 5 ] && return 1
        sleep 2
    done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp /run /etc
[ -e /etc/resolv.conf ] || : >/etc/resolv.conf

set -f
cmdline=$(cat /proc/cmdline)
ipconf='' done_url='' meta_url='' metajson_url='' hold='' debug='' quiet_kernel=1
for arg in $cmdline; do
    case $arg in
        ip=*) ipconf=${arg#ip=} ;;
        bootbrain.done=*) done_url=${arg#bootbrain.done=} ;;
        bootbrain.meta=*) meta_url=${arg#bootbrain.meta=} ;;
        bootbrain.metajson=*) metajson_url=${arg#bootbrain.metajson=} ;;
        bootbrain.hold=*) hold=${arg#bootbrain.hold=} ;;
        bootbrain.debug) debug=1; quiet_kernel='' ;;
        loglevel=* | debug | ignore_loglevel) quiet_kernel='' ;;
    esac
done
# Keep asynchronous kernel messages (link up etc.) from splitting our lines.
[ -n "$quiet_kernel" ] && echo 4 >/proc/sys/kernel/printk

log "init start kernel=$(uname -r)"
log "cmdline $cmdline"
for f in sys_vendor product_name product_serial product_uuid board_serial chassis_asset_tag; do
    v=$(cat "/sys/class/dmi/id/$f" 2>/dev/null)
    log "dmi $f=$v"
    log "dmi-hex $f=$(hex "$v")"
done

for m in $MODULES; do
    if insmod "/lib/modules/$m.ko" 2>/tmp/insmod.err; then
        log "insmod $m ok"
    else
        log "insmod $m failed: $(cat /tmp/insmod.err)"
    fi
done

ip link set lo up

old_ifs=$IFS
IFS=:
# shellcheck disable=SC2086
set -- $ipconf
IFS=$old_ifs
addr=${1:-} gw=${3:-} mask=${4:-} host=${5:-} dev=${6:-eth0} autoconf=${7:-}
dns0=${8:-} dns1=${9:-}
case $ipconf in
    dhcp | on | any | both) addr='' autoconf=dhcp ;;
esac
case $autoconf in on | any | both | bootp) autoconf=dhcp ;; esac
set +f

if [ -z "$ipconf" ]; then
    log "no ip= parameter: network not configured"
else
    i=0
    while [ ! -e "/sys/class/net/$dev" ]; do
        i=$((i + 1))
        [ $i -gt 100 ] && finish fail "reason=no-interface iface=$dev"
        usleep 100000
    done
    ip link set "$dev" up
    i=0
    while [ "$(cat "/sys/class/net/$dev/carrier" 2>/dev/null)" != 1 ]; do
        i=$((i + 1))
        [ $i -gt 150 ] && finish fail "reason=no-carrier iface=$dev"
        usleep 100000
    done
    log "carrier up on $dev after $((i * 100)) ms mac=$(cat "/sys/class/net/$dev/address")"

    if [ "$autoconf" = dhcp ]; then
        cat >/tmp/udhcpc.sh <<'EOF'
#!/bin/sh
case $1 in
    bound | renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        for r in $router; do ip route add default via "$r" dev "$interface"; break; done
        : >/etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
        [ -n "$hostname" ] && hostname "$hostname"
        echo "BOOTBRAIN-LAB: dhcp $1 ip=$ip/$mask router=$router dns=$dns hostname=$hostname"
        ;;
esac
exit 0
EOF
        chmod +x /tmp/udhcpc.sh
        if ! udhcpc -i "$dev" -n -q -f -t 5 -T 2 -s /tmp/udhcpc.sh; then
            finish fail "reason=dhcp-failed iface=$dev"
        fi
        [ -n "$host" ] && hostname "$host"
    else
        prefix=$(mask2prefix "$mask" "$addr")
        ip addr add "$addr/$prefix" dev "$dev" || finish fail "reason=addr-failed"
        if [ -n "$gw" ]; then
            ip route add default via "$gw" dev "$dev" || log "default route via $gw failed"
        fi
        : >/etc/resolv.conf
        for d in $dns0 $dns1; do echo "nameserver $d" >>/etc/resolv.conf; done
        [ -n "$host" ] && hostname "$host"
    fi
fi

actual=$(ip -o -4 addr show dev "$dev" 2>/dev/null | awk '{print $4; exit}')
hn=$(hostname)
log "network iface=$dev ip=$actual gw=$(ip route | awk '/^default/ {print $3; exit}') hostname=$hn"
log "resolv $(tr '\n' ' ' </etc/resolv.conf)"

meta=''
if [ -n "$meta_url" ]; then
    log "GET $meta_url"
    if ! meta=$(fetch timeout 20 wget -q -O- "$meta_url"); then
        finish fail "reason=meta-failed url=$meta_url"
    fi
    meta=$(printf '%s\n' "$meta" | head -n 1)
    log "meta $meta"
fi

meta_hostname='' ssh_key=''
if [ -n "$metajson_url" ]; then
    log "GET $metajson_url"
    if ! metajson=$(fetch timeout 20 wget -q -O- "$metajson_url"); then
        finish fail "reason=metajson-failed url=$metajson_url"
    fi
    log "metajson $(printf '%s' "$metajson" | wc -c) bytes, $(printf '%s\n' "$metajson" | wc -l) lines"
    meta_hostname=$(json_string "$metajson" hostname)
    ssh_key=$(json_first_string "$metajson" ssh_keys)
    log "metajson hostname=$meta_hostname"
    log "metajson ssh_key=$ssh_key"
fi

if [ -n "$done_url" ]; then
    body="ip=$(urlencode "$actual")&hostname=$(urlencode "$hn")&iface=$(urlencode "$dev")"
    [ -n "$meta_url" ] && body="$body&meta=$(urlencode "$meta")"
    if [ -n "$metajson_url" ]; then
        body="$body&meta_hostname=$(urlencode "$meta_hostname")&ssh_key=$(urlencode "$ssh_key")"
    fi
    log "POST $done_url $body"
    if ! resp=$(fetch timeout 20 wget -q -O- --post-data="$body" "$done_url"); then
        finish fail "reason=done-failed url=$done_url"
    fi
    log "response $(printf '%s\n' "$resp" | head -n 1)"
fi

finish ok "ip=$actual hostname=$hn"
