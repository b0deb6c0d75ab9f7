#!/bin/sh
# Prepare the TLS variant of the demo (etc/demo-tls.toml): a throwaway CA, a certificate for
# the demo vendor's domain, and a config folder for baresip, the TLS-only AI vendor that
# echoes the audio. Everything goes to var/demo-tls/ beside etc/; run it again to start over.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/var/demo-tls"
domain=vendor.demo.test
rm -rf "$out/pki" "$out/baresip"
mkdir -p "$out/pki" "$out/baresip"
cd "$out/pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=lvgateway demo CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$domain" -keyout vendor.key -out vendor.csr 2>/dev/null
printf 'subjectAltName=DNS:%s\n' "$domain" > vendor.ext
openssl x509 -req -in vendor.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile vendor.ext -out vendor.crt 2>/dev/null
cat vendor.crt vendor.key > vendor.pem
chmod 600 ca.key vendor.key vendor.pem
cat > "$out/baresip/config" <<CONF
poll_method	epoll
sip_listen	127.0.0.1:5082
sip_certificate	$out/pki/vendor.pem
sip_cafile	$out/pki/ca.pem
rtp_ports	31000-31999
module_path	/usr/lib/baresip/modules
module	g711.so
module	aubridge.so
module	echo.so
module	account.so
CONF
echo "<sip:bot@$domain;transport=tls>;regint=0" > "$out/baresip/accounts"
echo "demo TLS vendor ready in $out: baresip answers TLS on 127.0.0.1:5083 as $domain"
