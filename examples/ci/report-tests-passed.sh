#!/usr/bin/env bash
# Reports to Handoff that the tests passed for a commit, in the task the agent started this
# CI run for: an evidence JWT signed with CI's own key (the public half is registered in the
# deployment's [systems.ci.evidence] jwks_file), posted to POST /v1/evidence.
#
#   HANDOFF_URL           Handoff's base URL                      e.g. https://handoff.example.com
#   HANDOFF_TRUST_DOMAIN  its trust_domain (the evidence audience) e.g. https://handoff.example.com
#   HANDOFF_TASK          the task id the agent passed to this run
#   HANDOFF_CI_KEY_FILE   CI's private signing key (PKCS#8 PEM, P-256), from a CI secret
#   COMMIT                the commit the tests passed for (GitHub: $GITHUB_SHA)
#   HANDOFF               the handoff binary (default: handoff on the PATH)
set -euo pipefail
handoff=${HANDOFF:-handoff}
"$handoff" evidence sign \
  --system ci \
  --task "$HANDOFF_TASK" \
  --kind tests_passed \
  --field "commit=$COMMIT" \
  --key "$HANDOFF_CI_KEY_FILE" \
  --audience "$HANDOFF_TRUST_DOMAIN" \
  --lifetime 5m \
  | "$handoff" evidence send --server "$HANDOFF_URL"
