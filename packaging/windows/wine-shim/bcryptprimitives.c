/* Test-only stand-in for Windows' bcryptprimitives.dll, which Wine 8 lacks (Debian bookworm's
 * Wine; later Wine versions have it). Rust's standard library (1.78+) takes its random bytes
 * from ProcessPrng there; this one answers from RtlGenRandom. test-wine.sh builds it and puts it
 * in the test prefix's system32, never in the installer: on Windows 10+ the system's own is used. */
#include <windows.h>
#include <ntsecapi.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
