# SPDX-License-Identifier: MIT
# Run by `cmake --install`: writes samm-fasterbasic.pc into
# <prefix>/<libdir>/pkgconfig with the prefix the install really goes to,
# as an absolute path (as libsamm's samm.pc is written), so that pkg-config
# prints -I/opt/samm/include/samm-fasterbasic.  CMakeLists.txt sets
# SAMM_FB_PC_IN, SAMM_FB_PC_LIBDIR, SAMM_FB_PC_INCLUDEDIR and
# PROJECT_VERSION before this runs.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "")
  set(prefix "/")
endif()
get_filename_component(prefix "${prefix}" ABSOLUTE)
set(SAMM_FB_PC_PREFIX "${prefix}")
foreach(dir LIBDIR INCLUDEDIR)
  set(path "${SAMM_FB_PC_${dir}}")
  if(IS_ABSOLUTE "${path}" OR prefix STREQUAL "/")
    get_filename_component(path "/${path}" ABSOLUTE)
    set(abs_${dir} "${path}")
  else()
    get_filename_component(abs_${dir} "${prefix}/${path}" ABSOLUTE)
    set(path "\${prefix}/${path}")
  endif()
  string(REGEX REPLACE "/+$" "" path "${path}")
  set(SAMM_FB_PC_${dir} "${path}")
endforeach()
set(dest "$ENV{DESTDIR}${abs_LIBDIR}/pkgconfig/samm-fasterbasic.pc")
message(STATUS "Installing: ${dest}")
configure_file("${SAMM_FB_PC_IN}" "${dest}" @ONLY)
list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${dest}")
