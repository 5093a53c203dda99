#!/usr/bin/env bash
# Uploads the UI (ui/) to the stack's bucket with the config.json it starts from, and makes
# CloudFront serve the new files. Run after `sam deploy`:
#   infra/deploy-ui.sh STACK [--entra-ui-client-id ID --entra-api-scope SCOPE]
# With the Entra options (and the stack's EntraTenantId / EntraApiAudience set), people sign in
# with Entra ID; without them the UI asks for the API token (open UiUrl/#token=<token>).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stack="${1:?usage: infra/deploy-ui.sh STACK [--entra-ui-client-id ID --entra-api-scope SCOPE]}"
shift
client_id="" scope=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --entra-ui-client-id) client_id="$2"; shift 2 ;;
        --entra-api-scope) scope="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

output() {
    aws cloudformation describe-stacks --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
parameter() {
    aws cloudformation describe-stacks --stack-name "$stack" \
        --query "Stacks[0].Parameters[?ParameterKey=='$1'].ParameterValue" --output text
}
bucket="$(output UiBucketName)"
distribution="$(output UiDistributionId)"
url="$(output UiUrl)"
tenant="$(parameter EntraTenantId)"

config="$(mktemp)"
trap 'rm -f "$config"' EXIT
if [[ -n "$client_id" ]]; then
    [[ -n "$tenant" && -n "$scope" ]] || {
        echo "Entra sign-in needs the stack's EntraTenantId and --entra-api-scope" >&2
        exit 2
    }
    python3 - "$tenant" "$client_id" "$scope" >"$config" <<'PY'
import json, sys
tenant, client_id, scope = sys.argv[1:]
print(json.dumps({"apiBase": "/api/v1", "auth": {
    "mode": "entra",
    "authority": f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0",
    "clientId": client_id,
    "scopes": scope.split()}}))
PY
else
    echo '{"apiBase": "/api/v1", "auth": {"mode": "token"}}' >"$config"
fi

aws s3 sync ui/ "s3://$bucket/" --delete --exclude config.json --cache-control no-cache
aws s3 cp "$config" "s3://$bucket/config.json" --content-type application/json \
    --cache-control no-cache
aws cloudfront create-invalidation --distribution-id "$distribution" --paths '/*' >/dev/null
echo "UI deployed: $url"
