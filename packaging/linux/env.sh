# Source this (bash) to get the environment the build needs; runs the idempotent set-up first.
# shellcheck shell=bash
_sam3d_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
eval "$(bash "$_sam3d_here/setup.sh")"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
unset _sam3d_here
