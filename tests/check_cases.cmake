# SPDX-License-Identifier: MIT
# Fails unless PROG --list prints exactly COUNT cases: the CTest registration
# (read from the source's TEST lines) and the program agree.
execute_process(COMMAND ${PROG} --list OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROG} --list failed: ${rc}")
endif()
string(REGEX MATCHALL "[^\n]+" names "${out}")
list(LENGTH names n)
if(NOT n EQUAL COUNT)
  message(FATAL_ERROR "${PROG} has ${n} cases, CTest registered ${COUNT}: a TEST line the registration did not read?")
endif()
message(STATUS "${n} cases")
