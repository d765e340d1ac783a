; The Windows installer of sam3d-studio (NSIS 3, Unicode), for all users of the machine:
;   $PROGRAMFILES64\sam3d-studio\  sam3d-studio.exe, assets\, doc\ (licence and notices), the
;                                   icon; sam3d-studio-engine.exe and libtorch's DLLs when the
;                                   build has them (the CI workflow's MSVC build), the uninstaller
;   Start menu                      sam3d-studio\sam3d-studio, sam3d-studio\Uninstall sam3d-studio
;   File types                      .nii .nrrd .nhdr .mha .mhd .dcm open in sam3d-studio (made the
;                                   default only where no program had the type); .gz gets it in
;                                   "Open with" (Windows types files by their last extension, so
;                                   .nii.gz cannot be told from other .gz files); folders get
;                                   "Open in sam3d-studio" (a DICOM folder)
;   Apps & features                 the uninstall entry
; The uninstaller removes all of it (a file type's default only where it still is ours), and the
; uninstalling user's window layout; autosaved labels and fine-tuning runs stay (user data).
;
; makensis -DVERSION=0.1.0 -DSRC_DIR=staged\folder -DOUT_FILE=setup.exe -DICON=sam3d-studio.ico
; (packaging/windows/build-nsis.sh stages the folder and runs it.)

; A 64-bit installer: it runs where the 64-bit program does (and under a 64-bit-only Wine).
Target amd64-unicode
!include "MUI2.nsh"
!include "x64.nsh"
!include "LogicLib.nsh"

!ifndef VERSION | SRC_DIR | OUT_FILE | ICON
  !error "define VERSION, SRC_DIR, OUT_FILE and ICON (packaging/windows/build-nsis.sh does)"
!endif

!define APP "sam3d-studio"
!define PROGID "sam3d-studio.volume"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP}"
!define CLASSES "Software\Classes"

Name "${APP} ${VERSION}"
OutFile "${OUT_FILE}"
InstallDir "$PROGRAMFILES64\${APP}"
InstallDirRegKey HKLM "${UNINST_KEY}" "InstallLocation"
RequestExecutionLevel admin
SetCompressor /SOLID lzma
BrandingText "${APP} ${VERSION}"
VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APP}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${APP} installer"
VIAddVersionKey "LegalCopyright" "Apache-2.0"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_FINISHPAGE_RUN "$INSTDIR\${APP}.exe"
!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_LICENSE "${SRC_DIR}\doc\LICENSE.txt"
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Function .onInit
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP "${APP} needs 64-bit Windows."
    Abort
  ${EndIf}
  SetRegView 64
  SetShellVarContext all
FunctionEnd

Function un.onInit
  SetRegView 64
  SetShellVarContext all
FunctionEnd

; One file type: in "Open with", and the default where the type had none.
!macro Associate EXT
  WriteRegStr HKLM "${CLASSES}\${EXT}\OpenWithProgids" "${PROGID}" ""
  ReadRegStr $0 HKLM "${CLASSES}\${EXT}" ""
  ${If} $0 == ""
    WriteRegStr HKLM "${CLASSES}\${EXT}" "" "${PROGID}"
  ${EndIf}
!macroend

!macro Unassociate EXT
  DeleteRegValue HKLM "${CLASSES}\${EXT}\OpenWithProgids" "${PROGID}"
  DeleteRegKey /ifempty HKLM "${CLASSES}\${EXT}\OpenWithProgids"
  ReadRegStr $0 HKLM "${CLASSES}\${EXT}" ""
  ${If} $0 == "${PROGID}"
    DeleteRegValue HKLM "${CLASSES}\${EXT}" ""
  ${EndIf}
  DeleteRegKey /ifempty HKLM "${CLASSES}\${EXT}"
!macroend

Section "${APP}" main
  SectionIn RO
  SetOutPath "$INSTDIR"
  File /r "${SRC_DIR}\*.*"
  WriteUninstaller "$INSTDIR\Uninstall ${APP}.exe"

  CreateDirectory "$SMPROGRAMS\${APP}"
  CreateShortcut "$SMPROGRAMS\${APP}\${APP}.lnk" "$INSTDIR\${APP}.exe" "" "$INSTDIR\${APP}.ico"
  CreateShortcut "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk" "$INSTDIR\Uninstall ${APP}.exe"

  WriteRegStr HKLM "${CLASSES}\${PROGID}" "" "Medical volume (${APP})"
  WriteRegStr HKLM "${CLASSES}\${PROGID}\DefaultIcon" "" "$INSTDIR\${APP}.ico"
  WriteRegStr HKLM "${CLASSES}\${PROGID}\shell\open\command" "" '"$INSTDIR\${APP}.exe" "%1"'
  WriteRegStr HKLM "${CLASSES}\Applications\${APP}.exe\shell\open\command" "" '"$INSTDIR\${APP}.exe" "%1"'
  !insertmacro Associate ".nii"
  !insertmacro Associate ".nrrd"
  !insertmacro Associate ".nhdr"
  !insertmacro Associate ".mha"
  !insertmacro Associate ".mhd"
  !insertmacro Associate ".dcm"
  WriteRegStr HKLM "${CLASSES}\.gz\OpenWithProgids" "${PROGID}" ""
  WriteRegStr HKLM "${CLASSES}\Directory\shell\${APP}" "" "Open in ${APP}"
  WriteRegStr HKLM "${CLASSES}\Directory\shell\${APP}" "Icon" "$INSTDIR\${APP}.ico"
  WriteRegStr HKLM "${CLASSES}\Directory\shell\${APP}\command" "" '"$INSTDIR\${APP}.exe" "%1"'
  System::Call 'shell32::SHChangeNotify(i 0x08000000, i 0, p 0, p 0)'

  WriteRegStr HKLM "${UNINST_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\${APP}.ico"
  WriteRegStr HKLM "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINST_KEY}" "UninstallString" '"$INSTDIR\Uninstall ${APP}.exe"'
  WriteRegStr HKLM "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\Uninstall ${APP}.exe" /S'
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoRepair" 1
  !ifdef SIZE_KB
    WriteRegDWORD HKLM "${UNINST_KEY}" "EstimatedSize" ${SIZE_KB}
  !endif
SectionEnd

Section "Uninstall"
  Delete "$SMPROGRAMS\${APP}\${APP}.lnk"
  Delete "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk"
  RMDir "$SMPROGRAMS\${APP}"

  !insertmacro Unassociate ".nii"
  !insertmacro Unassociate ".nrrd"
  !insertmacro Unassociate ".nhdr"
  !insertmacro Unassociate ".mha"
  !insertmacro Unassociate ".mhd"
  !insertmacro Unassociate ".dcm"
  DeleteRegValue HKLM "${CLASSES}\.gz\OpenWithProgids" "${PROGID}"
  DeleteRegKey /ifempty HKLM "${CLASSES}\.gz\OpenWithProgids"
  DeleteRegKey /ifempty HKLM "${CLASSES}\.gz"
  DeleteRegKey HKLM "${CLASSES}\Directory\shell\${APP}"
  DeleteRegKey /ifempty HKLM "${CLASSES}\Directory\shell"
  DeleteRegKey /ifempty HKLM "${CLASSES}\Directory"
  DeleteRegKey HKLM "${CLASSES}\Applications\${APP}.exe"
  DeleteRegKey HKLM "${CLASSES}\${PROGID}"
  DeleteRegKey HKLM "${UNINST_KEY}"
  System::Call 'shell32::SHChangeNotify(i 0x08000000, i 0, p 0, p 0)'

  ; Exactly the files this installer put there (the list build-nsis.sh wrote from the staged
  ; folder), then the folders if empty: nothing else in $INSTDIR is touched.
  !include "${SRC_DIR}.uninstall.nsh"
  Delete "$INSTDIR\Uninstall ${APP}.exe"
  RMDir "$INSTDIR"

  ; The uninstalling user's window layout (eframe's app.ron); their autosaved labels
  ; (data\autosave) and fine-tuning runs (%LOCALAPPDATA%) are their work and stay, and with
  ; them the folders that hold them.
  SetShellVarContext current
  Delete "$APPDATA\${APP}\data\app.ron"
  RMDir "$APPDATA\${APP}\data"
  RMDir "$APPDATA\${APP}"
  SetShellVarContext all
SectionEnd
