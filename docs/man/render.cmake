# SPDX-License-Identifier: MIT
# cmake -DSCDOC=scdoc -DIN=page.3.scd -DOUT=page.3 -DVERSION=x.y.z -P render.cmake
# Renders one scdoc page, with @SAMM_VERSION@ replaced by the project version.
# Fails on anything scdoc says.
file(READ ${IN} text)
string(REPLACE "@SAMM_VERSION@" "${VERSION}" text "${text}")
get_filename_component(dir ${OUT} DIRECTORY)
file(MAKE_DIRECTORY ${dir})
file(WRITE ${OUT}.scd "${text}")
execute_process(COMMAND ${SCDOC} INPUT_FILE ${OUT}.scd OUTPUT_FILE ${OUT}.tmp
  ERROR_VARIABLE err RESULT_VARIABLE rc)
file(REMOVE ${OUT}.scd)
if(NOT rc EQUAL 0 OR NOT err STREQUAL "")
  file(REMOVE ${OUT}.tmp)
  message(FATAL_ERROR "scdoc failed on ${IN} (${rc}): ${err}")
endif()
file(RENAME ${OUT}.tmp ${OUT})
