# SPDX-License-Identifier: MIT
# Fails unless the shared compatibility library defines exactly its own
# dynamic symbols: the pool objects, samm_slab_pool_* and samm_fb_* - and
# none of libsamm's (samm_alloc_string above all).  Symbols a sanitizer
# build adds on its own are not the library's and are skipped.
execute_process(COMMAND nm -D --defined-only ${LIB} OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${LIB}")
endif()
string(REPLACE "\n" ";" lines "${syms}")
set(count 0)
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-f]+ [A-Z] (.+)$")
    set(sym ${CMAKE_MATCH_1})
    if(sym MATCHES "^__(odr_asan|asan|lsan|tsan|ubsan|sanitizer)")
      continue() # e.g. ASan's one-definition-rule markers of the pool objects
    endif()
    if(NOT sym MATCHES "^(samm_slab_pool_[a-z_]+|samm_fb_[a-z_]+|g_string_desc_pool|g_list_header_pool|g_list_atom_pool|g_object_pools)$")
      message(FATAL_ERROR "unexpected exported symbol: ${sym}")
    endif()
    math(EXPR count "${count} + 1")
  endif()
endforeach()
if(NOT count EQUAL 18)
  message(FATAL_ERROR "${count} symbols exported, expected 18")
endif()
message(STATUS "${count} symbols exported")
