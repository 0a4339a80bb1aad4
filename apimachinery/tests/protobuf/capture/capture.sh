#!/bin/bash
# Recaptures the golden protobuf bodies of apimachinery/tests/protobuf from the real kubectl.
#
# Usage: capture.sh KUBECONFIG
#   KUBECONFIG points at a running, empty gitplane (or any Kubernetes API server over plain
#   http), e.g. one started with `gitplane up --data-dir /tmp/x --listen 127.0.0.1:18443`.
#
# Every command runs twice: with --dry-run=client -o json, whose output is the expected JSON
# (NAME.json), and for real through proxy.py, a recording reverse proxy that saves each
# application/vnd.kubernetes.protobuf request body (NAME.bin). kubectl picks the client
# matching the server's minor version (1.32 for gitplane). pod-debug and token have no
# --dry-run: write their NAME.json by hand from the decoded body and review it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$(dirname "$here")
work=$(mktemp -d)
trap 'kill $proxy 2>/dev/null; rm -rf "$work"' EXIT

server=$(sed -n 's/^ *server: *http:\/\///p' "$1" | head -1)
port=$((20000 + RANDOM % 10000))
python3 "$here/proxy.py" "$port" "$server" "$work/bodies" 2>"$work/proxy.log" &
proxy=$!
sed "s|server: .*|server: http://127.0.0.1:$port|" "$1" > "$work/kubeconfig"
for _ in $(seq 50); do [ -d "$work/bodies" ] && break; sleep 0.1; done
k() { kubectl --kubeconfig "$work/kubeconfig" --cache-dir "$work/cache" "$@"; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -keyout "$work/tls.key" -out "$work/tls.crt" -subj "/CN=gitplane-test" 2>/dev/null
cp "$work/tls.crt" "$work/ca.crt"

# capture NAME ARGS...: --dry-run=client -o json go before a `--` separator, if any.
capture() {
  local name=$1 pre=() post=() seen=0
  shift
  for a in "$@"; do
    if [ $seen = 0 ] && [ "$a" = "--" ]; then seen=1; fi
    if [ $seen = 0 ]; then pre+=("$a"); else post+=("$a"); fi
  done
  if [ "$name" != pod-debug ] && [ "$name" != token ]; then
    k "${pre[@]}" --dry-run=client -o json "${post[@]}" > "$out/$name.json"
  fi
  local before
  before=$(ls "$work/bodies" | wc -l)
  k "$@" || true
  local body
  body=$(ls "$work/bodies" | sort | tail -n +$((before + 1)) | head -1)
  if [ -z "$body" ]; then echo "$name: kubectl sent no protobuf body" >&2; return 1; fi
  cp "$work/bodies/$body" "$out/$name.bin"
}

cd "$work"
capture namespace create namespace ns1
capture configmap create configmap cm1 --from-literal=a=b --from-literal=empty= --from-file=ca.crt
capture secret-generic create secret generic s1 --from-literal=user=admin --from-literal=pw='p@ss w0rd'
capture secret-tls create secret tls tls1 --cert=tls.crt --key=tls.key
capture secret-docker-registry create secret docker-registry reg1 --docker-server=r.example.com \
  --docker-username=u --docker-password=p --docker-email=u@example.com
capture deployment create deployment web --image=nginx:1.27 --port=80 --replicas=3
capture deployment-zero-replicas create deployment idle --image=nginx --image=busybox --replicas=0
capture service-clusterip create service clusterip svc-c --tcp=80:8080
capture service-nodeport create service nodeport svc-n --tcp=80:http --node-port=30080
capture service-loadbalancer create service loadbalancer svc-lb --tcp=443:8443
capture service-externalname create service externalname svc-x --external-name=db.example.com
capture serviceaccount create serviceaccount sa1
capture job create job job1 --image=busybox -- echo hi
capture cronjob create cronjob cj1 --image=busybox --schedule="*/5 * * * *" -- date
capture job-from-cronjob create job job-from-cj --from=cronjob/cj1
capture role create role r1 --verb=get,list --resource=pods,configmaps --resource-name=x
capture rolebinding create rolebinding rb1 --role=r1 --user=alice --serviceaccount=default:sa1
capture clusterrole create clusterrole cr1 --verb=get --resource=nodes --non-resource-url=/healthz
capture clusterrole-aggregate create clusterrole cr-agg --aggregation-rule=rbac.example.com/aggregate=true
capture clusterrolebinding create clusterrolebinding crb1 --clusterrole=cr1 --group=devs
capture priorityclass create priorityclass high --value=1000 --description="high priority" \
  --preemption-policy=Never
capture quota create quota q1 --hard=cpu=2,memory=1Gi,pods=10 --scopes=NotTerminating
capture poddisruptionbudget create poddisruptionbudget pdb1 --selector=app=web --min-available=50%
capture ingress create ingress ing1 --rule="example.com/path*=svc-c:80,tls=my-cert" --class=nginx
# `kubectl run` sends JSON; `kubectl debug --copy-to` creates its Pod through the typed client.
k run pod1 --image=nginx --labels=a=b --env=K=V --port=80
capture pod-debug debug pod1 --copy-to=pod1-debug --image=busybox --container=dbg --attach=false -- sleep 1d
capture token create token sa1
